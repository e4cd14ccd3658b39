from django.apps import AppConfig


class WorkspacesConfig(AppConfig):
    name = "workspaces"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core import health
        from workspaces.nodes import engine_ready

        # /readyz reports the engine (or, without one, the nodes) beside the database and Redis.
        health.register_check("docker", engine_ready)
