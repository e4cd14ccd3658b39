import getpass
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tenants.auth import authenticate_bearer
from tenants.models import AuditEvent, Membership, Tenant

pytestmark = pytest.mark.django_db


def test_create_tenant_with_owner_and_token_round_trip():
    call_command(
        "create_tenant", "acme", "--name", "Acme", "--owner", "ops@acme.test", stdout=StringIO()
    )
    tenant = Tenant.objects.get(slug="acme")
    assert tenant.name == "Acme"
    assert tenant.policy.max_workspaces == 10
    membership = Membership.objects.get(tenant=tenant)
    assert membership.role == "owner"
    assert membership.user.is_staff

    out = StringIO()
    call_command(
        "create_token",
        "--tenant",
        "acme",
        "--user",
        "ops@acme.test",
        "--scopes",
        "read",
        "--name",
        "ci",
        stdout=out,
    )
    printed = out.getvalue().strip()
    assert "\n" not in printed and printed.startswith("dbt_")
    principal = authenticate_bearer(f"Bearer {printed}")
    assert principal.tenant == tenant
    assert principal.scopes == frozenset({"read"})
    # Each step is audited with the operator (the OS user running the command) as actor.
    events = {e.action: e for e in AuditEvent.objects.filter(tenant=tenant)}
    assert set(events) >= {"tenant.create", "membership.set", "api_token.create"}
    assert {e.actor_kind for e in events.values()} == {"cli"}
    assert events["api_token.create"].actor_id == f"cli:{getpass.getuser()}"
    assert events["api_token.create"].target_id == principal.actor_id.removeprefix("token:")


def test_create_tenant_rejects_bad_and_duplicate_slugs():
    with pytest.raises(CommandError, match="validation_failed"):
        call_command("create_tenant", "Bad Slug!", stdout=StringIO())
    call_command("create_tenant", "dup", stdout=StringIO())
    with pytest.raises(CommandError, match="tenant_exists"):
        call_command("create_tenant", "dup", stdout=StringIO())


def test_create_token_rejects_unknown_scopes_and_non_members():
    call_command("create_tenant", "t1", "--owner", "a@t1.test", stdout=StringIO())
    call_command("create_tenant", "t2", "--owner", "b@t2.test", stdout=StringIO())
    with pytest.raises(CommandError, match="invalid_scopes"):
        call_command(
            "create_token",
            "--tenant",
            "t1",
            "--user",
            "a@t1.test",
            "--scopes",
            "root",
            stdout=StringIO(),
        )
    with pytest.raises(CommandError, match="not_a_member"):
        call_command("create_token", "--tenant", "t1", "--user", "b@t2.test", stdout=StringIO())
    with pytest.raises(CommandError, match="No tenant"):
        call_command("create_token", "--tenant", "nope", "--user", "a@t1.test", stdout=StringIO())
