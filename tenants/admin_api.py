"""REST face of tenant administration: members, API tokens and the policy.

Under ``/tenants/{slug}/``; the token must be the tenant's and carry the admin
scope. Another tenant's slug answers exactly like a missing one (404). Every
change goes through the same audited services as the Django admin.
"""

from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Query, Router
from ninja.pagination import LimitOffsetPagination, paginate
from ninja.responses import Status

from tenants import selectors, services
from tenants.api import principal_of
from tenants.audit import audit_event_json
from tenants.errors import MemberNotFound
from tenants.models import ApiToken, AuditEvent, Membership, TenantPolicy
from tenants.principal import Principal
from tenants.schemas import (
    ApiTokenCreatedOut,
    ApiTokenCreateIn,
    ApiTokenListQuery,
    ApiTokenOut,
    AuditEventOut,
    AuditListQuery,
    MemberInviteIn,
    MemberOut,
    MemberUpdateIn,
    TenantPolicyOut,
    TenantPolicyUpdateIn,
)

router = Router(tags=["tenant administration"])


def _admin(request: HttpRequest, slug: str) -> Principal:
    actor = principal_of(request)
    selectors.tenant_require_admin(actor=actor, slug=slug)
    return actor


def _member_out(membership: Membership) -> dict[str, Any]:
    user = membership.user
    return {
        "user_id": user.pk,
        "username": user.get_username(),
        "email": getattr(user, "email", "") or "",
        "role": membership.role,
        "granted_by": membership.granted_by,
        "created_at": membership.created_at,
    }


def _token_out(token: ApiToken) -> dict[str, Any]:
    return {
        "prefix": token.prefix,
        "name": token.name,
        "user_id": token.user_id,
        "username": token.user.get_username(),
        "scopes": token.scopes,
        "expires_at": token.expires_at,
        "last_used_at": token.last_used_at,
        "revoked_at": token.revoked_at,
        "created_at": token.created_at,
    }


@router.get("/tenants/{slug}/members", response=list[MemberOut], operation_id="member_list")
@paginate(LimitOffsetPagination)
def member_list(request: HttpRequest, slug: str) -> Any:
    """The tenant's members and their roles (admin scope)."""
    actor = _admin(request, slug)
    return [_member_out(m) for m in selectors.member_list(actor=actor)]


@router.post("/tenants/{slug}/members", response={201: MemberOut}, operation_id="member_invite")
def member_invite(request: HttpRequest, slug: str, payload: MemberInviteIn) -> Status[Any]:
    """Add a person by email with a role; someone without a password yet is mailed an
    invitation. An existing member gets the new role."""
    actor = _admin(request, slug)
    membership = services.membership_invite(
        actor=actor,
        email=payload.email,
        role=payload.role,
        site_url=request.build_absolute_uri("/"),
    )
    return Status(201, _member_out(membership))


@router.patch("/tenants/{slug}/members/{user_id}", response=MemberOut, operation_id="member_update")
def member_update(
    request: HttpRequest, slug: str, user_id: int, payload: MemberUpdateIn
) -> dict[str, Any]:
    """Change a member's role (the last owner cannot be demoted: `last_owner`)."""
    actor = _admin(request, slug)
    membership = selectors.member_get(actor=actor, user_id=user_id)
    updated = services.membership_set(actor=actor, user=membership.user, role=payload.role)
    return _member_out(updated)


@router.delete(
    "/tenants/{slug}/members/{user_id}", response={204: None}, operation_id="member_remove"
)
def member_remove(request: HttpRequest, slug: str, user_id: int) -> Status[None]:
    """Remove a member; their tokens of this tenant are revoked."""
    actor = _admin(request, slug)
    services.membership_remove(
        actor=actor, membership=selectors.member_get(actor=actor, user_id=user_id)
    )
    return Status(204, None)


@router.get("/tenants/{slug}/tokens", response=list[ApiTokenOut], operation_id="api_token_list")
@paginate(LimitOffsetPagination)
def api_token_list(request: HttpRequest, slug: str, filters: Query[ApiTokenListQuery]) -> Any:
    """The tenant's API tokens by prefix (secrets are never shown again)."""
    actor = _admin(request, slug)
    tokens = selectors.api_token_list(
        actor=actor, prefix=filters.prefix, include_revoked=filters.include_revoked
    )
    return [_token_out(t) for t in tokens]


@router.post(
    "/tenants/{slug}/tokens", response={201: ApiTokenCreatedOut}, operation_id="api_token_create"
)
def api_token_create(request: HttpRequest, slug: str, payload: ApiTokenCreateIn) -> Status[Any]:
    """Create a token for a member (default: the caller). The answer holds the secret,
    once; a token never gets a scope its creator lacks (`scope_escalation`)."""
    actor = _admin(request, slug)
    if payload.user_id is None:
        if actor.user is None:
            raise MemberNotFound()
        user = actor.user
    else:
        user = selectors.member_get(actor=actor, user_id=payload.user_id).user
    token, secret = services.api_token_create(
        actor=actor,
        user=user,
        name=payload.name,
        scopes=payload.scopes,
        expires_at=payload.expires_at,
    )
    return Status(201, {**_token_out(token), "token": secret})


@router.delete(
    "/tenants/{slug}/tokens/{prefix}", response=ApiTokenOut, operation_id="api_token_revoke"
)
def api_token_revoke(request: HttpRequest, slug: str, prefix: str) -> dict[str, Any]:
    """Revoke a token (it stays listed with `include_revoked`)."""
    actor = _admin(request, slug)
    token = services.api_token_revoke(
        actor=actor, token=selectors.api_token_get(actor=actor, prefix=prefix)
    )
    return _token_out(token)


@router.get("/tenants/{slug}/policy", response=TenantPolicyOut, operation_id="tenant_policy_get")
def tenant_policy_get(request: HttpRequest, slug: str) -> TenantPolicy:
    """The tenant's policy (admin scope)."""
    actor = _admin(request, slug)
    return selectors.tenant_policy_get(tenant=actor.tenant)


@router.patch(
    "/tenants/{slug}/policy", response=TenantPolicyOut, operation_id="tenant_policy_update"
)
def tenant_policy_update(
    request: HttpRequest, slug: str, payload: TenantPolicyUpdateIn
) -> TenantPolicy:
    """Change the fields sent; a bad value is `validation_failed` with `extra.fields`
    naming each field and its problem, and nothing is changed."""
    actor = _admin(request, slug)
    return services.tenant_policy_update(
        actor=actor, changes=payload.model_dump(exclude_unset=True)
    )


def _audit_events(request: HttpRequest, filters: AuditListQuery) -> QuerySet[AuditEvent]:
    return selectors.audit_event_list(
        actor=principal_of(request),
        actor_id=filters.actor,
        action=filters.action,
        outcome=filters.outcome,
        since=filters.since,
        until=filters.until,
        target_type=filters.target_type,
        target_id=filters.target_id,
        request_id=filters.request_id,
    )


@router.get("/audit", response=list[AuditEventOut], operation_id="audit_event_list")
@paginate(LimitOffsetPagination)
def audit_event_list(request: HttpRequest, filters: Query[AuditListQuery]) -> Any:
    """The tenant's audit events, newest first, filtered (admin scope)."""
    return _audit_events(request, filters)


@router.get(
    "/audit/export",
    operation_id="audit_event_export",
    response={200: str},
    openapi_extra={
        "responses": {
            200: {
                "description": "One JSON object per line (the audit log line format).",
                "content": {"application/x-ndjson": {}},
            }
        }
    },
)
def audit_event_export(
    request: HttpRequest, filters: Query[AuditListQuery]
) -> StreamingHttpResponse:
    """Every matching event as JSON lines, streamed (same filters as the list)."""
    events = _audit_events(request, filters)
    response = StreamingHttpResponse(
        (audit_event_json(e) + "\n" for e in events.iterator(chunk_size=500)),
        content_type="application/x-ndjson",
    )
    response["Content-Disposition"] = 'attachment; filename="audit.jsonl"'
    return response
