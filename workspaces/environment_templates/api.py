"""REST face of templates: create, list, get, log, build (again), delete."""

import base64
import binascii
import time
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router
from ninja.pagination import paginate
from ninja.responses import Status

from core.rest import BoundedLimitOffset
from tenants.api import principal_of
from workspaces.environment_templates import selectors, services
from workspaces.environment_templates.errors import TemplateInvalid
from workspaces.environment_templates.schemas import (
    TemplateCreateIn,
    TemplateDetailOut,
    TemplateListQuery,
    TemplateLogOut,
    TemplateLogQuery,
    TemplateOut,
)
from workspaces.models import Template, TemplateStatus
from workspaces.schemas import TemplateRef

router = Router(tags=["templates"])


@router.post("/templates", response={201: TemplateDetailOut}, operation_id="template_create")
def template_create(request: HttpRequest, payload: TemplateCreateIn) -> Status[Template]:
    """A new version of a template: `image` (ready at once) or `dockerfile` (+ a base64 tar
    context), built on a node (status `building`; follow `/templates/{id}/log`)."""
    try:
        context = base64.b64decode(payload.context_tar_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TemplateInvalid("context_tar_b64 is not base64.") from exc
    template = services.template_create(
        actor=principal_of(request),
        name=payload.name,
        image=payload.image,
        dockerfile=payload.dockerfile,
        context=context,
        description=payload.description,
    )
    return Status(201, template)


@router.get("/templates", response=list[TemplateOut], operation_id="template_list")
@paginate(BoundedLimitOffset)
def template_list(request: HttpRequest, filters: Query[TemplateListQuery]) -> Any:
    """The tenant's templates, by name, newest version first."""
    return selectors.template_list(actor=principal_of(request), name=filters.name)


@router.get("/templates/{ref}", response=TemplateDetailOut, operation_id="template_get")
def template_get(request: HttpRequest, ref: TemplateRef) -> Template:
    """One template version, with its Dockerfile and its build log so far."""
    return selectors.template_get(actor=principal_of(request), ref=ref)


@router.get("/templates/{ref}/log", response=TemplateLogOut, operation_id="template_log")
def template_log(request: HttpRequest, ref: TemplateRef, query: Query[TemplateLogQuery]) -> Any:
    """The build log from `offset`; with `wait_s`, waits (up to 25 s) for more while the
    build runs. Repeat with `next_offset` until `done`."""
    actor = principal_of(request)
    offset = query.offset
    deadline = time.monotonic() + query.wait_s
    while True:
        template = selectors.template_get(actor=actor, ref=ref)
        text = template.build_log[offset:]
        done = template.status != TemplateStatus.BUILDING
        if text or done or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    return {
        "id": template.public_id,
        "status": template.status,
        "offset": offset,
        "next_offset": offset + len(text),
        "text": text,
        "done": done,
    }


@router.post(
    "/templates/{ref}/build", response={201: TemplateDetailOut}, operation_id="template_build"
)
def template_build(request: HttpRequest, ref: TemplateRef) -> Status[Template]:
    """Build a Dockerfile template again, as its next version."""
    actor = principal_of(request)
    template = selectors.template_get(actor=actor, ref=ref)
    return Status(201, services.template_rebuild(actor=actor, template=template))


@router.delete("/templates/{ref}", response={204: None}, operation_id="template_delete")
def template_delete(request: HttpRequest, ref: TemplateRef) -> Status[None]:
    """Delete a template version and its built image (`template_in_use` while used)."""
    actor = principal_of(request)
    services.template_delete(actor=actor, template=selectors.template_get(actor=actor, ref=ref))
    return Status(204, None)
