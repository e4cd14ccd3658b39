from django.apps import AppConfig


class WorkspacesConfig(AppConfig):
    name = "workspaces"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The embedded mode's periodic jobs (TTL expiry, GC, reconciliation): started
        # once, and only in a process that serves requests (see the scheduler).
        from devbench_site import scheduler

        scheduler.maybe_start()
