from tests.mcp_live import (  # noqa: F401 - fixtures
    live_mcp,
    mcp_server_process,
)
