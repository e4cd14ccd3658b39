from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from allauth.account.signals import user_logged_in
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_login_failed
        from django.db.models.signals import post_delete, post_save

        from core import metrics
        from core.asgi_handler import register_quick_credential
        from core.refusals import register_recorder
        from tenants import adapters, token_cache
        from tenants.audit import audit_refused_input
        from tenants.auth import register_bearer_validator
        from tenants.models import ApiToken, Tenant
        from tenants.oidc.bearer import validate_bearer
        from tenants.tokens import TOKEN_PREFIX

        # OIDC access tokens on every interface that calls authenticate_bearer.
        register_bearer_validator(validate_bearer)
        # API tokens are checked against the database only: their reads may be quick.
        register_quick_credential(f"Bearer {TOKEN_PREFIX}".encode())
        # Refusals of the validation layer (REST, MCP) land in the audit log.
        register_recorder(audit_refused_input)
        user_logged_in.connect(adapters.on_user_logged_in, dispatch_uid="tenants.rules_on_login")
        # A change to what a cached token verification depends on applies at once here.
        for model in (ApiToken, Tenant, get_user_model()):
            for name, signal in (("save", post_save), ("delete", post_delete)):
                uid = f"tenants.token_cache.{model._meta.label_lower}.{name}"
                signal.connect(token_cache.clear, sender=model, dispatch_uid=uid)
        user_login_failed.connect(
            lambda **_: metrics.AUTH_FAILURES.labels(code="login_failed").inc(),
            dispatch_uid="tenants.count_login_failures",
            weak=False,
        )
