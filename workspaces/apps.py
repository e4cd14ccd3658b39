from django.apps import AppConfig


class WorkspacesConfig(AppConfig):
    name = "workspaces"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core import health
        from workspaces.runtime import get_driver

        # /readyz reports the engine beside the database and Redis.
        health.register_check("docker", lambda: get_driver().ping())
