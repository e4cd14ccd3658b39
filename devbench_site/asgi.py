"""ASGI entry point (`daphne devbench_site.asgi:application`): HTTP, MCP and websockets."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "devbench_site.settings")
django.setup(set_prefix=False)

from core.asgi_handler import OneHopASGIHandler  # noqa: E402

# Django's ASGI handler, but each request's middleware and view in one thread hop.
django_asgi_app = OneHopASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from core import http_server  # noqa: E402
from core.health import HealthzFastPath  # noqa: E402
from core.http_limits import BodyLimit  # noqa: E402
from core.mcp.endpoint import MCPRouter  # noqa: E402
from devbench_site.routing import websocket_origin_validator, websocket_urlpatterns  # noqa: E402
from tenants.auth import authenticate_bearer_limited  # noqa: E402
from tenants.oidc.config import oidc_issuers  # noqa: E402

# daphne's header and early body limits and access-log redaction (it has no settings for
# them); the production server's are in devbench_site.server.
http_server.install()

# The embedded mode has no front web server: serve static files here.
http_app = (
    ASGIStaticFilesHandler(django_asgi_app) if settings.DEVBENCH_SERVE_STATIC else django_asgi_app
)

application = ProtocolTypeRouter(
    {
        # /mcp/<tenant>/ (and its RFC 9728 metadata) bypass Django; the rest is Django.
        # The body limit (413) of both servers, in front of everything that reads a body.
        "http": BodyLimit(
            HealthzFastPath(
                MCPRouter(http_app, authenticate=authenticate_bearer_limited, issuers=oidc_issuers)
            )
        ),
        "websocket": websocket_origin_validator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
