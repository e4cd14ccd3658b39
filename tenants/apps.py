from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from allauth.account.signals import user_logged_in

        from tenants import adapters
        from tenants.auth import register_bearer_validator
        from tenants.oidc.bearer import validate_bearer

        # OIDC access tokens on every interface that calls authenticate_bearer.
        register_bearer_validator(validate_bearer)
        user_logged_in.connect(adapters.on_user_logged_in, dispatch_uid="tenants.rules_on_login")
        from django.contrib.auth.signals import user_login_failed

        from core import metrics

        user_login_failed.connect(
            lambda **_: metrics.AUTH_FAILURES.labels(code="login_failed").inc(),
            dispatch_uid="tenants.count_login_failures",
            weak=False,
        )
