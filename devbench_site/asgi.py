"""ASGI entry point (`daphne devbench_site.asgi:application`): HTTP and websockets."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "devbench_site.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from devbench_site.routing import websocket_origin_validator, websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_origin_validator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
