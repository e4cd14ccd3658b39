from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The shared kernel: errors, request context, the MCP toolkit, list contract.

    Every app may import it; it imports no app (tests/test_layers.py checks both).
    """

    name = "core"
