from tests.mcp_live import start_daphne  # noqa: F401 - fixture
