"""The MCP toolkit: how apps declare tools, the server, and its HTTP endpoint."""
