"""The one NinjaAPI: routers from every app, errors mapped once (``core.rest``)."""

from __future__ import annotations

from core.fastjson import OrjsonRenderer
from core.rest import DevBenchAPI, install_error_handlers
from core.version import API_VERSION
from execution.api import router as execution_router
from tenants.admin_api import router as tenant_admin_router
from tenants.api import router as tenants_router
from tenants.auth import BearerAuth
from usage.api import router as usage_router
from workspaces.api import router as workspaces_router
from workspaces.environment_templates.api import router as templates_router
from workspaces.filesystem.api import router as filesystem_router
from workspaces.snapshots.api import router as snapshots_router

api = DevBenchAPI(
    title="DevBench API",
    version=API_VERSION,
    description=(
        "Isolated Docker workspaces for agents, people and integrations. "
        "Authenticate with `Authorization: Bearer <token>`: an API token, or an OpenID "
        "Connect access token plus `X-DevBench-Tenant: <slug>` when its user belongs to "
        "several tenants. Errors share one shape: "
        '`{"code": "...", "message": "...", "extra": {...}}`; branch on `code`.'
    ),
    auth=BearerAuth(),
    renderer=OrjsonRenderer(),
    urls_namespace="api-v1",
)
install_error_handlers(api)

api.add_router("/", tenants_router)
api.add_router("/", tenant_admin_router)
api.add_router("/", usage_router)
api.add_router("/", workspaces_router)
api.add_router("/", execution_router)
api.add_router("/", filesystem_router)
api.add_router("/", snapshots_router)
api.add_router("/", templates_router)
