from tests.integration.dropzone.webdav_fixtures import webdav_server  # noqa: F401
