from tests.integration.dropzone.webdav_fixtures import (  # noqa: F401
    fake_webdav_server,
    product_webdav_server,
    webdav_server,
)
