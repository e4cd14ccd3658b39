from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from core.errors import DevBenchError
from tenants import services
from tenants.models import Tenant
from tenants.principal import operator_principal


class Command(BaseCommand):
    help = "Create an API token and print only the token (it is not stored and not shown again)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG")
        parser.add_argument("--user", required=True, metavar="EMAIL")
        parser.add_argument(
            "--scopes", default="read,write", help="comma-separated: read,write,admin"
        )
        parser.add_argument("--name", default="cli")
        parser.add_argument("--expires-days", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant '{options['tenant']}'.")
        user = get_user_model().objects.filter(email__iexact=options["user"]).first()
        if user is None:
            raise CommandError(f"No user with email '{options['user']}'.")
        expires_at = None
        if options["expires_days"] is not None:
            expires_at = timezone.now() + timedelta(days=options["expires_days"])
        try:
            _, secret = services.api_token_create(
                actor=operator_principal(tenant),
                user=user,
                name=options["name"],
                scopes=options["scopes"].split(","),
                expires_at=expires_at,
            )
        except DevBenchError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(secret)
