from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from core.errors import DevBenchError
from tenants import services
from tenants.auth import authenticate_bearer
from tenants.models import Membership, Tenant
from tenants.principal import operator_principal


def _secret_file(name: str) -> Path:
    path = Path(settings.VAR_DIR) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write_private(path: Path, value: str) -> None:
    path.write_text(value)
    path.chmod(0o600)


def _still_valid(token: str, slug: str) -> bool:
    """Whether the kept token still works. No token yet is no attempt (nothing is audited)."""
    if not token:
        return False
    try:
        authenticate_bearer(f"Bearer {token}", tenant_slug=slug)
    except DevBenchError:
        return False
    return True


class Command(BaseCommand):
    help = (
        "Create (once) a demo tenant, an admin user and an API token for the embedded "
        "quickstart; print the URLs and credentials. Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", default="demo")
        parser.add_argument("--email", default="admin@devbench.local")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        email, slug, base = options["email"], options["tenant"], options["base_url"].rstrip("/")
        user_model = get_user_model()
        user = user_model.objects.filter(username="admin").first()
        password_file = _secret_file("admin-password")
        if user is None:
            password = secrets.token_urlsafe(12)
            user = user_model.objects.create_superuser("admin", email, password)
            _write_private(password_file, password)
        password = password_file.read_text().strip() if password_file.exists() else "(unchanged)"

        tenant = Tenant.objects.filter(slug=slug).first() or services.tenant_create(
            slug=slug, name="Demo", owner=user, actor_id="cli:bootstrap_demo"
        )
        actor = operator_principal(tenant, name="bootstrap_demo")
        if not Membership.objects.filter(tenant=tenant, user=user, role="owner").exists():
            services.membership_set(actor=actor, user=user, role="owner")

        token_file = _secret_file(f"{slug}-token")
        token = token_file.read_text().strip() if token_file.exists() else ""
        if not _still_valid(token, slug):
            _, token = services.api_token_create(
                actor=actor, user=user, name="demo", scopes=["read", "write", "admin"]
            )
            _write_private(token_file, token)

        self.stdout.write(
            "\n".join(
                [
                    "",
                    "DevBench is ready.",
                    f"  Web UI:     {base}/",
                    f"  Admin:      {base}/admin/   (user: admin, password: {password})",
                    f"  REST API:   {base}/api/v1/  (docs: {base}/api/v1/docs)",
                    f"  MCP:        {base}/mcp/{slug}/",
                    f"  API token:  {token}",
                    f"  (credentials are kept in {settings.VAR_DIR}/)",
                    "",
                ]
            )
        )
