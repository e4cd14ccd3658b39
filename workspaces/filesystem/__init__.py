"""Binary-exact, confined file operations in workspaces (through the engine's archive API)."""
