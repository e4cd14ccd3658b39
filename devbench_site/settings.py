"""DevBench settings: one module, two run modes, everything from the environment.

* Embedded (default, DATABASE_URL and REDIS_URL unset): SQLite under var/,
  in-memory channel layer, tasks run in-process on a thread pool.
* Production (DATABASE_URL and/or REDIS_URL set): PostgreSQL, channels-redis,
  Celery with a Redis broker; insecure defaults are refused.

Every variable is listed in README.md ("Configuration").
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from devbench_site import logs as _logs
from devbench_site.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("DEVBENCH_VAR_DIR", str(BASE_DIR / "var")))

DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = env_str("REDIS_URL")
EMBEDDED = not DATABASE_URL and not REDIS_URL
if bool(DATABASE_URL) != bool(REDIS_URL):
    raise ImproperlyConfigured(
        "Set both DATABASE_URL and REDIS_URL for production, or neither for the embedded mode."
    )

_INSECURE_KEY_PREFIX = "django-insecure-"


def _embedded_secret_key() -> str:
    """A per-installation key kept under var/, so sessions survive restarts."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(_INSECURE_KEY_PREFIX + secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


if EMBEDDED:
    SECRET_KEY = env_str("SECRET_KEY") or _embedded_secret_key()
    DEBUG = env_bool("DEBUG", True)
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
else:
    SECRET_KEY = env_str("SECRET_KEY")
    DEBUG = env_bool("DEBUG", False)
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
    if not SECRET_KEY or SECRET_KEY.startswith(_INSECURE_KEY_PREFIX) or len(SECRET_KEY) < 50:
        raise ImproperlyConfigured(
            "Production mode needs SECRET_KEY: at least 50 random characters, not a "
            "'django-insecure-' key (e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe(50))')."
        )
    if DEBUG:
        raise ImproperlyConfigured("Production mode refuses DEBUG=true: it leaks internals.")
    if not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "Production mode needs ALLOWED_HOSTS: a comma-separated list of host names, not '*'."
        )

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "channels",
    "ninja",
    "django_prometheus",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "core",
    "tenants",
    "workspaces",
    "execution",
    "usage",
    "devbench_site.apps.SiteConfig",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.RequestContextMiddleware",
    "core.api_fallback.ApiFallbackMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.messages.LazyMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.csp.ExcludingCSPMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "devbench_site.urls"
ASGI_APPLICATION = "devbench_site.asgi.application"
WSGI_APPLICATION = "devbench_site.wsgi.application"
SITE_ID = 1

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tenants.web.web_context",
            ],
        },
    },
]

if DATABASE_URL:
    if not DATABASE_URL.startswith(("postgres://", "postgresql://")):
        raise ImproperlyConfigured("DATABASE_URL must be a postgres:// URL.")
    # A per-process connection pool: Celery closes the connection around every task and
    # Django at the end of every request, which without a pool means a new PostgreSQL
    # connection (~8 ms) each time. A running exec holds one connection for its life, so
    # DATABASE_POOL_MAX_SIZE must cover a worker's concurrency (-c) plus its hand-off runners.
    DATABASE_POOL = env_bool("DATABASE_POOL", True)
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL,
            conn_max_age=0 if DATABASE_POOL else env_int("DATABASE_CONN_MAX_AGE", 0),
            conn_health_checks=not DATABASE_POOL,
        )
    }
    DATABASES["default"]["ENGINE"] = "core.db.postgresql"  # django-prometheus's, leaner
    if DATABASE_POOL:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DATABASE_POOL_MIN_SIZE", 1),
            "max_size": env_int("DATABASE_POOL_MAX_SIZE", 56),
            # Waiting longer than this for a free connection is an error, not a hang.
            "timeout": float(env_int("DATABASE_POOL_TIMEOUT_S", 30)),
        }
    if env_bool("DATABASE_PREPARED_STATEMENTS", True):
        # Parameters bound by the server, and a statement a connection runs a fifth time
        # kept prepared: PostgreSQL then stops planning it again, which was half of its
        # CPU on a read (bench/README.md). Django disables both by default for poolers
        # that cannot keep prepared statements (PgBouncer in transaction mode before
        # 1.21): behind one, set DATABASE_PREPARED_STATEMENTS=false.
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            server_side_binding=True, prepare_threshold=5
        )
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "core.db.sqlite3",  # django-prometheus's, leaner
            "NAME": str(VAR_DIR / "devbench.sqlite3"),
            # WAL + a busy timeout let the in-process task threads write beside requests.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
DEVBENCH_SERVE_STATIC = env_bool("DEVBENCH_SERVE_STATIC", EMBEDDED)

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_EMAIL_VERIFICATION = "none"

# Mail (invitations, password resets). Embedded default: printed to the console.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "DevBench <devbench@localhost>")

# --- Channels -----------------------------------------------------------------
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis with a socket timeout longer than its blocking pop and a
            # bounded, blocking connection pool (core/channel_layer.py).
            "BACKEND": "core.channel_layer.WakeupChannelLayer",
            "CONFIG": {
                "hosts": [env_str("CHANNEL_LAYER_URL", REDIS_URL)],
                "capacity": 1000,
                "expiry": 30,
                "socket_timeout_s": float(env_int("CHANNEL_LAYER_SOCKET_TIMEOUT_S", 15)),
                "max_connections": env_int("CHANNEL_LAYER_MAX_CONNECTIONS", 1000),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Request size limits of the web server (core/http_server.py) ------------
# Headers: 431 above this many bytes in total. Bodies: 413 above this (it must exceed the
# largest file any tenant policy allows, max_file_size_bytes, plus archive overhead).
DEVBENCH_MAX_REQUEST_HEADER_BYTES = env_int("DEVBENCH_MAX_REQUEST_HEADER_BYTES", 32 * 1024)
DEVBENCH_MAX_REQUEST_BODY_BYTES = env_int("DEVBENCH_MAX_REQUEST_BODY_BYTES", 1024 * 1024 * 1024)

# --- Content-Security-Policy of the web pages (django-csp) --------------------------
# Scripts only from our static files (the pages have no inline script). Styles also
# inline: xterm.js styles the terminal through <style> elements it creates itself.
# 'self' covers the same-origin ws:/wss: websockets. The JSON API is left out.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/api/"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- /metrics: loopback (or these networks), or the bearer token when one is set --------
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", ["127.0.0.0/8", "::1/128"])
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

# --- Rate limits ------------------------------------------------------------------
# Per credential (API token, OIDC or signed-in user) and per tenant, over REST, MCP and
# websocket connects together; "limits" notation ("600/minute", "20/second"), empty: none.
DEVBENCH_RATE_LIMIT_PER_TOKEN = env_str("DEVBENCH_RATE_LIMIT_PER_TOKEN", "1200/minute")
DEVBENCH_RATE_LIMIT_PER_TENANT = env_str("DEVBENCH_RATE_LIMIT_PER_TENANT", "6000/minute")
DEVBENCH_RATE_LIMIT_STORAGE = env_str("DEVBENCH_RATE_LIMIT_STORAGE", REDIS_URL or "memory://")

# --- Celery -------------------------------------------------------------------
# Embedded: the same task code runs on an in-process thread pool
# (devbench_site.tasks_inprocess); no broker is needed.
CELERY_TASKS_IN_PROCESS = EMBEDDED
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# acks_late tasks longer than the visibility timeout would be delivered twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 7200)}
CELERY_TIMEZONE = "UTC"
# Workers log through settings.LOGGING (JSON lines with request ids), not Celery's format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
DEVBENCH_IN_PROCESS_WORKERS = env_int("DEVBENCH_IN_PROCESS_WORKERS", 8)

# --- DevBench -----------------------------------------------------------------
DEVBENCH_INSTANCE = env_str("DEVBENCH_INSTANCE", "default")
DEVBENCH_NODE = env_str("DEVBENCH_NODE", "local")
DEVBENCH_RUNTIME_DRIVER = env_str(
    "DEVBENCH_RUNTIME_DRIVER", "workspaces.runtime.docker.DockerDriver"
)
DEVBENCH_DOCKER_HOST = env_str("DOCKER_HOST", "unix:///var/run/docker.sock")
DEVBENCH_DOCKER_TIMEOUT = env_int("DEVBENCH_DOCKER_TIMEOUT", 60)
DEVBENCH_DEFAULT_IMAGE = env_str("DEVBENCH_DEFAULT_IMAGE", "devbench/busybox:latest")
DEVBENCH_CONTAINER_RUNTIME = env_str("DEVBENCH_CONTAINER_RUNTIME", "")

# --- Warm pool and idle pausing (docs/workspaces.md) ----------------------------
# Installation defaults of new tenant policies: started, unassigned workspaces kept
# per tenant (of its default image) on each node it may use; their maximum age; and
# the idle time after which a workspace is paused (0: never).
DEVBENCH_WARM_POOL_SIZE = env_int("DEVBENCH_WARM_POOL_SIZE", 0)
DEVBENCH_WARM_POOL_MAX_AGE_S = env_int("DEVBENCH_WARM_POOL_MAX_AGE_S", 3600)
DEVBENCH_IDLE_TIMEOUT_S = env_int("DEVBENCH_IDLE_TIMEOUT_S", 0)

# --- Nodes (several Docker hosts; docs/nodes.md) --------------------------------
# Whether this process calls the engine of its own node (DEVBENCH_NODE) itself. The
# embedded mode does; production web processes do not (they reach every engine through
# its node worker's agent), and a node worker always does for its own node.
DEVBENCH_ENGINE_DIRECT = env_bool("DEVBENCH_ENGINE_DIRECT", EMBEDDED)
# The node worker's agent: where it listens, the URL web processes use to reach it
# (default: http://<bind address>:<port>), and its shared secret (default: generated
# at start and stored on the Node row, which only the platform's processes can read).
DEVBENCH_NODE_AGENT_BIND = env_str("DEVBENCH_NODE_AGENT_BIND", "127.0.0.1:0")
DEVBENCH_NODE_AGENT_URL = env_str("DEVBENCH_NODE_AGENT_URL", "")
DEVBENCH_NODE_AGENT_TOKEN = env_str("DEVBENCH_NODE_AGENT_TOKEN", "")
# TLS with a key the worker makes at start, its certificate pinned by callers through
# the node's row. Off (plain HTTP) is for a single machine: the agent then refuses any
# bind address but the loopback, and callers refuse plain URLs to other hosts.
DEVBENCH_NODE_AGENT_TLS = env_bool("DEVBENCH_NODE_AGENT_TLS", True)
# The agent also listens on a Unix socket in this directory (made owner-only); processes
# of the same user on the worker's host use it instead of TLS over TCP. Empty: off.
DEVBENCH_NODE_AGENT_SOCKET_DIR = env_str(
    "DEVBENCH_NODE_AGENT_SOCKET_DIR", str(VAR_DIR / "agent-sockets")
)
# What the node worker registers (unset: keep the row's values; memory and CPUs
# default to the engine's). Labels: comma-separated key=value pairs.
DEVBENCH_NODE_MAX_WORKSPACES = env_int("DEVBENCH_NODE_MAX_WORKSPACES", 0)
DEVBENCH_NODE_MEMORY_MB = env_int("DEVBENCH_NODE_MEMORY_MB", 0)
DEVBENCH_NODE_CPUS = env_str("DEVBENCH_NODE_CPUS", "")
DEVBENCH_NODE_LABELS = env_str("DEVBENCH_NODE_LABELS", "")
DEVBENCH_NODE_HEARTBEAT_S = env_int("DEVBENCH_NODE_HEARTBEAT_S", 5)
# A node without a heartbeat this long is down: its workspaces become unavailable.
DEVBENCH_NODE_DOWN_AFTER_S = env_int("DEVBENCH_NODE_DOWN_AFTER_S", 30)
# "spread": the node with the most free capacity; "pack": the fullest that fits.
DEVBENCH_PLACEMENT = env_str("DEVBENCH_PLACEMENT", "spread")
if DEVBENCH_PLACEMENT not in ("spread", "pack"):
    raise ImproperlyConfigured("DEVBENCH_PLACEMENT must be spread or pack.")

# --- MCP ----------------------------------------------------------------------
# Streamable HTTP at /mcp/<tenant>/ (core.mcp.endpoint) and stdio (manage.py mcp_stdio).
# The modules whose ``tools`` (a core.mcp.tools.ToolSet) make up the one server.
MCP_TOOL_MODULES = (
    "execution.mcp",
    "workspaces.mcp",
    "workspaces.filesystem.mcp",
    "workspaces.snapshots.mcp",
    "workspaces.environment_templates.mcp",
)
# Browser pages on these origins may call the endpoint (besides same-origin pages);
# clients that send no Origin header (agents, CLIs) are not affected.
MCP_ALLOWED_ORIGINS = env_list("MCP_ALLOWED_ORIGINS")
# Largest accepted request body (fs_write content travels base64-encoded inside it).
MCP_MAX_REQUEST_BODY_BYTES = env_int("MCP_MAX_REQUEST_BODY_BYTES", 16 * 1024 * 1024)

# --- Security -----------------------------------------------------------------
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not EMBEDDED)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not EMBEDDED)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not EMBEDDED)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if EMBEDDED else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not EMBEDDED)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not EMBEDDED)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Health and metrics answer probes over plain HTTP inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# JSON lines (LOG_FORMAT=json, the default) or readable lines (plain), every record with the
# request id that caused it and secrets scrubbed: see devbench_site/logs.py.
LOG_FORMAT = env_str("LOG_FORMAT", "json")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured("LOG_FORMAT must be json or plain.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": _logs.formatter(LOG_FORMAT),
        # One JSON object per audit event on the devbench.audit logger (stderr by default).
        "audit_json": {"format": "%(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "structured"},
        "audit": {"class": "logging.StreamHandler", "formatter": "audit_json"},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's own console handler (DEBUG only) would print each request warning
        # a second time, beside the root handler: one handler, the root's.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.channels.server": {"level": "WARNING"},
        # The MCP SDK announces the end of every stateless request at INFO.
        "mcp.server.streamable_http": {"level": "WARNING"},
        "devbench.audit": {
            "handlers": ["audit"],
            "level": env_str("AUDIT_LOG_LEVEL", "INFO"),
            "propagate": False,
        },
    },
}
_logs.configure_structlog()

# --- Workspaces: lifecycle, policy (workspaces/) ----------------------------------
# Image patterns (fnmatch) a tenant may use when its policy lists none.
DEVBENCH_ALLOWED_IMAGES = env_list("DEVBENCH_ALLOWED_IMAGES", ["devbench/*"])
# How long a resolved image reference is trusted before asking the engine again.
DEVBENCH_IMAGE_CACHE_TTL_S = env_int("DEVBENCH_IMAGE_CACHE_TTL_S", 30)
# host[:port] of the registry snapshots are pushed to (credentials: the installation's
# Registry row for that host); empty: a snapshot stays on the node that took it.
DEVBENCH_SNAPSHOT_REGISTRY = env_str("DEVBENCH_SNAPSHOT_REGISTRY", "")
# host[:port] of the registry built templates are pushed to, so any node can spawn them;
# unset: DEVBENCH_SNAPSHOT_REGISTRY; empty: a built template stays on the node that built it.
DEVBENCH_TEMPLATE_REGISTRY = env_str("DEVBENCH_TEMPLATE_REGISTRY", DEVBENCH_SNAPSHOT_REGISTRY)
# Template builds: the longest a build may run, the largest Dockerfile + context, image.
DEVBENCH_TEMPLATE_BUILD_TIMEOUT_S = env_int("DEVBENCH_TEMPLATE_BUILD_TIMEOUT_S", 600)
DEVBENCH_TEMPLATE_CONTEXT_MAX_BYTES = env_int("DEVBENCH_TEMPLATE_CONTEXT_MAX_BYTES", 10 * 1024**2)
DEVBENCH_TEMPLATE_MAX_IMAGE_BYTES = env_int("DEVBENCH_TEMPLATE_MAX_IMAGE_BYTES", 4 * 1024**3)
# How long spawn(wait=True) waits for the worker to bring a workspace up.
DEVBENCH_SPAWN_WAIT_S = env_int("DEVBENCH_SPAWN_WAIT_S", 120)
# A spawn replayed with the same idempotency key returns the same workspace this long.
DEVBENCH_IDEMPOTENCY_TTL_S = env_int("DEVBENCH_IDEMPOTENCY_TTL_S", 86400)
# Seconds given to a workspace's processes to exit on kill before they are killed.
DEVBENCH_STOP_TIMEOUT_S = env_int("DEVBENCH_STOP_TIMEOUT_S", 5)
# The embedded in-process scheduler: "auto" (embedded mode, serving processes only),
# "on" or "off". Production runs `celery -A devbench_site beat` instead.
DEVBENCH_SCHEDULER = env_str("DEVBENCH_SCHEDULER", "auto")
if DEVBENCH_SCHEDULER not in ("auto", "on", "off"):
    raise ImproperlyConfigured("DEVBENCH_SCHEDULER must be auto, on or off.")

# Seconds a file's ETag (sha256) is remembered by its path, size and mtime, so a stat
# need not read the file (docs/files.md: what a stale one can and cannot do).
DEVBENCH_ETAG_CACHE_S = env_int("DEVBENCH_ETAG_CACHE_S", 24 * 3600)

# --- Identity: sign-in (allauth), OIDC bearer tokens, sessions, audit (tenants/) ----
# Every value comes from the environment; defaults are documented in docs/identity.md.
SOCIALACCOUNT_ADAPTER = "tenants.adapters.SocialAccountAdapter"
# Providers for browser sign-in AND bearer tokens: a JSON list of allauth openid_connect
# apps, e.g. [{"provider_id": "corp", "name": "Corp SSO", "client_id": "devbench",
# "secret": "...", "settings": {"server_url": "https://sso.example.com/realms/x",
# "api_audience": "devbench-api"}}]. Apps can also be added in the admin (Social applications).
try:
    _oidc_apps = json.loads(env_str("DEVBENCH_OIDC_PROVIDERS", "[]") or "[]")
except ValueError as _exc:
    raise ImproperlyConfigured("DEVBENCH_OIDC_PROVIDERS must be a JSON list of apps.") from _exc
if not isinstance(_oidc_apps, list):
    raise ImproperlyConfigured("DEVBENCH_OIDC_PROVIDERS must be a JSON list of apps.")
for _app in _oidc_apps:
    # PKCE on unless an app says otherwise: it protects the code even for confidential clients.
    _app.setdefault("settings", {}).setdefault("oauth_pkce_enabled", True)
SOCIALACCOUNT_PROVIDERS = {"openid_connect": {"APPS": _oidc_apps, "OAUTH_PKCE_ENABLED": True}}
SOCIALACCOUNT_AUTO_SIGNUP = True
# Never link a provider's user to a local account by email (see tenants/identity.py).
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = False
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_LOGIN_ON_GET = False  # a POST (with CSRF) starts sign-in with a provider
SOCIALACCOUNT_REQUESTS_TIMEOUT = env_int("OIDC_HTTP_TIMEOUT", 5)
ACCOUNT_SIGNUP_FIELDS = ["username*", "email", "password1*", "password2*"]
# Local sign-up is off by default: accounts come from a provider or an admin.
ACCOUNT_ALLOW_SIGNUP = env_bool("ACCOUNT_ALLOW_SIGNUP", False)
SOCIALACCOUNT_ALLOW_SIGNUP = env_bool("SOCIALACCOUNT_ALLOW_SIGNUP", True)
ACCOUNT_ADAPTER = "tenants.adapters.AccountAdapter"
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_SESSION_REMEMBER = None

# Bearer tokens from the providers above (tenants/oidc/).
OIDC_HTTP_TIMEOUT = env_int("OIDC_HTTP_TIMEOUT", 5)
OIDC_DISCOVERY_TTL = env_int("OIDC_DISCOVERY_TTL", 3600)
OIDC_PROVIDERS_CACHE_TTL = env_int("OIDC_PROVIDERS_CACHE_TTL", 10)
OIDC_JWKS_TTL = env_int("OIDC_JWKS_TTL", 3600)
OIDC_JWKS_REFRESH_COOLDOWN = env_int("OIDC_JWKS_REFRESH_COOLDOWN", 30)
OIDC_USERINFO_CACHE_TTL = env_int("OIDC_USERINFO_CACHE_TTL", 60)
OIDC_LEEWAY = env_int("OIDC_LEEWAY", 30)
OIDC_SCOPE_PREFIX = env_str("OIDC_SCOPE_PREFIX", "devbench:")

if REDIS_URL:
    # Userinfo answers for opaque tokens are shared by every web process.
    CACHES = {
        "default": {
            "BACKEND": "core.redis_cache.RedisCache",  # one client per process
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"devbench:{DEVBENCH_INSTANCE}",
            # Every use is a cache in front of something that answers without it (file
            # ETags, OIDC userinfo): a hung Redis must fail fast, not hang the request.
            "OPTIONS": {"socket_timeout": 1.0, "socket_connect_timeout": 1.0},
        }
    }

# Sessions: cookies are Secure outside the embedded mode (see "Security" above).
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 14 * 24 * 3600)
SESSION_COOKIE_NAME = env_str("SESSION_COOKIE_NAME", "devbench_session")
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"

# Audit: rows older than this many days are deleted by tenants.audit_purge (0 keeps all).
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 365)
AUDIT_PURGE_BATCH = env_int("AUDIT_PURGE_BATCH", 5000)

# --- Execution: limits and liveness (execution/) --------------------------------
# Longest timeout_s a caller may ask for; exec_run uses the default when none is given.
DEVBENCH_EXEC_MAX_TIMEOUT_S = env_int("DEVBENCH_EXEC_MAX_TIMEOUT_S", 24 * 3600)
DEVBENCH_EXEC_RUN_DEFAULT_TIMEOUT_S = env_int("DEVBENCH_EXEC_RUN_DEFAULT_TIMEOUT_S", 300)
# The runner touches heartbeat_at this often; a running exec whose heartbeat is
# older than the stale limit has lost its runner and is marked ``lost``.
DEVBENCH_EXEC_HEARTBEAT_S = env_int("DEVBENCH_EXEC_HEARTBEAT_S", 2)
# Seconds a verified API token is remembered per process (revocation bound; 0: off).
DEVBENCH_TOKEN_CACHE_S = env_int("DEVBENCH_TOKEN_CACHE_S", 5)
# Threads per web process that run requests (core/asgi_handler.py); a waiting request
# (exec long-poll, wait: true) holds one while it waits.
DEVBENCH_WEB_THREADS = env_int("DEVBENCH_WEB_THREADS", 200, minimum=1)
# Threads per web process for quick reads (database-only REST GETs): core/asgi_handler.py.
DEVBENCH_WEB_QUICK_THREADS = env_int("DEVBENCH_WEB_QUICK_THREADS", 3, minimum=1)
# Threads per web process for file metadata reads (fs stat and list, answered by the
# workspace's node); they overflow to the large pool while a stuck node holds them all.
DEVBENCH_WEB_ENGINE_READ_THREADS = env_int("DEVBENCH_WEB_ENGINE_READ_THREADS", 3, minimum=1)
# A large file upload is read by its view while it arrives (core/streamed_body.py); it
# fails with request_body_incomplete when no part of it arrives for this long.
DEVBENCH_UPLOAD_STALL_S = env_int("DEVBENCH_UPLOAD_STALL_S", 60)
DEVBENCH_EXEC_STALE_AFTER_S = env_int("DEVBENCH_EXEC_STALE_AFTER_S", 30)
# A "starting" exec no worker has claimed after this long gets its task sent again
# (claiming is conditional, so a duplicate never runs it twice).
DEVBENCH_EXEC_REDISPATCH_AFTER_S = env_int("DEVBENCH_EXEC_REDISPATCH_AFTER_S", 120)
# A node process that is root beside a runc container starts its non-interactive execs
# with runc itself, as the engine would (workspaces/runtime/docker/runc_exec.py); false:
# the engine starts every exec.
DEVBENCH_RUNC_EXECS = env_bool("DEVBENCH_RUNC_EXECS", True)
# How many of those runc starts run at once per process, on threads at a low CPU weight
# (workspaces/runtime/docker/runc_starts.py): half the usable cores, at least one.
DEVBENCH_RUNC_STARTS = env_int(
    "DEVBENCH_RUNC_STARTS", max(1, len(os.sched_getaffinity(0)) // 2), minimum=1
)
# Runners a node worker starts at once when handed them through its agent, besides its
# Celery pool (execution/hand_off.py); more go through the queue. 0: always the queue.
DEVBENCH_EXEC_HAND_OFF_RUNNERS = env_int("DEVBENCH_EXEC_HAND_OFF_RUNNERS", 24)

# --- Periodic jobs ------------------------------------------------------------
# Run by Celery beat in production and by devbench_site.scheduler in the embedded mode
# (same entries, same tasks). The workspace dispatchers fan out per node.
CELERY_BEAT_SCHEDULE = {
    "workspaces-reconcile": {
        "task": "workspaces.reconcile_dispatch",
        "schedule": float(env_int("DEVBENCH_RECONCILE_INTERVAL_S", 60)),
    },
    "workspaces-expire": {
        "task": "workspaces.expire_due",
        "schedule": float(env_int("DEVBENCH_EXPIRE_INTERVAL_S", 30)),
    },
    "workspaces-gc": {
        "task": "workspaces.gc_dispatch",
        "schedule": float(env_int("DEVBENCH_GC_INTERVAL_S", 300)),
    },
    "workspaces-nodes-check": {
        "task": "workspaces.nodes_check",
        "schedule": float(env_int("DEVBENCH_NODES_CHECK_INTERVAL_S", 5)),
    },
    "workspaces-idempotency-expire": {
        "task": "workspaces.idempotency_expire",
        "schedule": float(env_int("DEVBENCH_IDEMPOTENCY_EXPIRE_INTERVAL_S", 600)),
    },
    "workspaces-pool-maintain": {
        "task": "workspaces.pool_dispatch",
        "schedule": float(env_int("DEVBENCH_POOL_INTERVAL_S", 15)),
    },
    "workspaces-idle-pause": {
        "task": "workspaces.idle_pause_due",
        "schedule": float(env_int("DEVBENCH_IDLE_CHECK_INTERVAL_S", 30)),
    },
    "execution-reconcile": {
        "task": "execution.exec_reconcile",
        "schedule": float(env_int("DEVBENCH_EXEC_RECONCILE_INTERVAL_S", 15)),
        "options": {"queue": "default"},
    },
    "tenants.audit_purge": {
        "task": "tenants.audit_purge",
        "schedule": float(env_int("AUDIT_PURGE_INTERVAL_S", 3600)),
    },
}

# Image vulnerability scans (workspaces/scanning.py): the scanner class (empty: none) and
# where TrivyReportDirectory finds `trivy image -f json` reports.
DEVBENCH_IMAGE_SCANNER = env_str("DEVBENCH_IMAGE_SCANNER", "")
DEVBENCH_IMAGE_SCAN_REPORTS = env_str("DEVBENCH_IMAGE_SCAN_REPORTS", str(VAR_DIR / "scan-reports"))

# --- Operations (devbench_site/metrics.py, execution retention, worker shutdown) ---------
# A `tenant` label on spawn and exec series: only for installations with few tenants.
DEVBENCH_METRICS_TENANT_LABEL = env_bool("DEVBENCH_METRICS_TENANT_LABEL", False)
# A Celery worker serves its own metrics on this port (0: none); see docs/operations.md.
DEVBENCH_WORKER_METRICS_PORT = env_int("DEVBENCH_WORKER_METRICS_PORT", 0)
DEVBENCH_WORKER_METRICS_ADDR = env_str("DEVBENCH_WORKER_METRICS_ADDR", "127.0.0.1")
# Finished execs (and their output) older than the tenant policy's exec_retention_days
# are deleted by this job, this many rows per transaction.
DEVBENCH_EXEC_PURGE_BATCH = env_int("DEVBENCH_EXEC_PURGE_BATCH", 500)
# On SIGTERM a worker stops taking tasks and gives its running execs this long to end;
# then it ends them (output kept, status failed, error_code worker_shutdown).
DEVBENCH_WORKER_DRAIN_TIMEOUT_S = env_int("DEVBENCH_WORKER_DRAIN_TIMEOUT_S", 30)
CELERY_BEAT_SCHEDULE = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    "usage-meter": {
        "task": "usage.meter_dispatch",
        "schedule": float(env_int("DEVBENCH_USAGE_INTERVAL_S", 60)),
        "options": {"queue": "default"},
    },
    "execution-purge": {
        "task": "execution.exec_purge",
        "schedule": float(env_int("DEVBENCH_EXEC_PURGE_INTERVAL_S", 3600)),
        "options": {"queue": "default"},
    },
}
