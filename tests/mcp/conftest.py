from tests.mcp_live import (  # noqa: F401 - fixtures
    js_client,
    live_mcp,
    mcp_server_process,
    server_env,
    start_daphne,
)
