"""Factories for plain rows. Stateful setup (running workspaces) goes through services."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from execution.models import Exec, ExecChunk, Stream
from tenants import tokens
from tenants.models import (
    ApiToken,
    AuditEvent,
    Membership,
    MembershipRule,
    Role,
    Tenant,
    TenantPolicy,
)
from workspaces.models import Workspace

M = TypeVar("M")


class ModelFactory(factory.django.DjangoModelFactory[M]):
    """A factory whose call mypy knows returns the model row (factory_boy leaves it untyped)."""

    class Meta:
        abstract = True

    if TYPE_CHECKING:

        def __new__(cls, *args: Any, **kwargs: Any) -> M:  # type: ignore[misc]
            ...


class UserFactory(ModelFactory[User]):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.test")
    password = factory.django.Password("correct horse battery staple")


class TenantFactory(ModelFactory[Tenant]):
    class Meta:
        model = Tenant
        skip_postgeneration_save = True

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())

    @factory.post_generation
    def policy(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        """``policy__<field>=...`` sets fields of the policy the tenant is created with."""
        if create and kwargs:
            TenantPolicy.objects.filter(tenant=self).update(**kwargs)  # type: ignore[misc]


class TenantPolicyFactory(ModelFactory[TenantPolicy]):
    class Meta:
        model = TenantPolicy
        django_get_or_create = ("tenant",)

    tenant = factory.SubFactory(TenantFactory)


class MembershipFactory(ModelFactory[Membership]):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    tenant = factory.SubFactory(TenantFactory)
    role = Role.MEMBER


class ApiTokenFactory(ModelFactory[Any]):  # an ApiToken with .raw set
    """Builds a token row; the raw token is on ``instance.raw`` (never stored)."""

    class Meta:
        model = ApiToken
        exclude = ("parts",)

    tenant = factory.SubFactory(TenantFactory)
    user = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"token-{n}")
    scopes = factory.LazyFunction(lambda: ["read", "write"])
    salt = factory.LazyFunction(tokens.new_salt)

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> ApiToken:
        raw, parts = tokens.generate()
        kwargs["prefix"] = parts.prefix
        kwargs["secret_hash"] = tokens.hash_secret(parts.secret, kwargs["salt"])
        Membership.objects.get_or_create(
            tenant=kwargs["tenant"], user=kwargs["user"], defaults={"role": Role.MEMBER}
        )
        token: ApiToken = super()._create(model_class, *args, **kwargs)
        token.raw = raw  # type: ignore[attr-defined]
        return token


class AuditEventFactory(ModelFactory[AuditEvent]):
    class Meta:
        model = AuditEvent

    tenant = factory.SubFactory(TenantFactory)
    actor_kind = "token"
    actor_id = "token:abcdefgh"
    action = "workspace.spawn"
    outcome = AuditEvent.Outcome.SUCCESS


class WorkspaceFactory(ModelFactory[Workspace]):
    """A row only: no container. Use workspace services for a live one."""

    class Meta:
        model = Workspace

    tenant = factory.SubFactory(TenantFactory)
    image_ref = "devbench/busybox:latest"
    status = "running"


class ExecFactory(ModelFactory[Exec]):
    """An exec row only (nothing runs): for reads, lists, admin and isolation tests."""

    class Meta:
        model = Exec

    workspace = factory.SubFactory(WorkspaceFactory, container_id="c")
    tenant = factory.SelfAttribute("workspace.tenant")
    cmd = factory.LazyFunction(lambda: ["true"])


class ExecChunkFactory(ModelFactory[ExecChunk]):
    class Meta:
        model = ExecChunk

    exec = factory.SubFactory(ExecFactory)
    seq = factory.Sequence(lambda n: n + 1)
    stream = Stream.STDOUT
    data = b"output\n"


class MembershipRuleFactory(ModelFactory[MembershipRule]):
    """Grants ``role`` in ``tenant`` to sign-ins of ``provider_id`` whose claim has ``value``."""

    class Meta:
        model = MembershipRule

    tenant = factory.SubFactory(TenantFactory)
    provider_id = "corp"
    value = factory.Sequence(lambda n: f"group-{n}")


def columns_of(instance: Any) -> dict[str, Any]:
    """A row's own columns (by attribute name), to compare rows built two ways."""
    return {
        field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields
    }
