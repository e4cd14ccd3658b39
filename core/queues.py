"""Names of the Celery queues, built in one place."""


def node_queue(node: str) -> str:
    """The queue of one node's workers: tasks that talk to that node's container engine."""
    return f"node.{node}"
