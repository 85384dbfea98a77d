from tests.integration.dropzone.webdav_fixtures import fake_webdav_server, webdav_server  # noqa: F401
