from django.apps import AppConfig


class WorkspacesConfig(AppConfig):
    name = "workspaces"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core import health
        from workspaces.nodes import engine_ready

        # /readyz reports the engine (or, without one, the nodes) beside the database and Redis.
        health.register_check("docker", engine_ready)

        from core import streamed_body

        # Large raw file writes and archive uploads go on to the engine while they arrive.
        streamed_body.register("PUT", r"^/api/v1/workspaces/[^/]+/(files|archive)$")
        streamed_body.register("POST", r"^/api/v1/workspaces/[^/]+/archive$")

        from django.db.models.signals import post_save

        from tenants.models import TenantPolicy
        from workspaces.metrics import pool_collector_register

        # Wherever a policy is edited (admin, REST, web, shell), its pools follow it.
        post_save.connect(_policy_saved, sender=TenantPolicy, dispatch_uid="workspaces.pool")
        pool_collector_register()


def _policy_saved(sender: object, instance: object, raw: bool = False, **_: object) -> None:
    from workspaces.pool import pool_policy_changed

    if not raw:
        pool_policy_changed(policy=instance)  # type: ignore[arg-type]
