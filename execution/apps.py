from typing import Any

from django.apps import AppConfig


class ExecutionConfig(AppConfig):
    name = "execution"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from workspaces.nodes import node_down

        node_down.connect(_execs_lost_with_node, dispatch_uid="execution.node_down")


def _execs_lost_with_node(sender: Any, node: str, **_: Any) -> None:
    from execution.tasks import SENDERS
    from execution.worker import exec_lose_node

    exec_lose_node(node=node, senders=SENDERS)
