from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import DevBenchError
from tenants import services


class Command(BaseCommand):
    help = "Create a tenant with the default policy, optionally with an owner (by email)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--owner", metavar="EMAIL", help="made (or found) and made owner")

    def handle(self, *args: Any, **options: Any) -> None:
        owner = None
        if options["owner"]:
            owner = services.user_get_or_create(email=options["owner"])
        try:
            tenant = services.tenant_create(
                slug=options["slug"],
                name=options["name"],
                owner=owner,
                actor_id=f"cli:{getpass.getuser()}",
            )
        except DevBenchError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(f"Created tenant '{tenant.slug}'.")
