"""DevBench settings: one module, two run modes, everything from the environment.

* Embedded (default, DATABASE_URL and REDIS_URL unset): SQLite under var/,
  in-memory channel layer, tasks run in-process on a thread pool.
* Production (DATABASE_URL and/or REDIS_URL set): PostgreSQL, channels-redis,
  Celery with a Redis broker; insecure defaults are refused.

Every variable is listed in README.md ("Configuration").
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

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
    "tenants",
    "workspaces",
    "execution",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "devbench_site.middleware.RequestContextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
            ],
        },
    },
]

if DATABASE_URL:
    if not DATABASE_URL.startswith(("postgres://", "postgresql://")):
        raise ImproperlyConfigured("DATABASE_URL must be a postgres:// URL.")
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0), conn_health_checks=True
        )
    }
    DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django_prometheus.db.backends.sqlite3",
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

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_EMAIL_VERIFICATION = "none"

# --- Channels -----------------------------------------------------------------
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 30},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

# --- Execution (execution/): limits, liveness and its periodic job --------------
# Longest timeout_s a caller may ask for; exec_run uses the default when none is given.
DEVBENCH_EXEC_MAX_TIMEOUT_S = env_int("DEVBENCH_EXEC_MAX_TIMEOUT_S", 24 * 3600)
DEVBENCH_EXEC_RUN_DEFAULT_TIMEOUT_S = env_int("DEVBENCH_EXEC_RUN_DEFAULT_TIMEOUT_S", 300)
# The runner touches heartbeat_at this often; a running exec whose heartbeat is
# older than the stale limit has lost its runner and is marked ``lost``.
DEVBENCH_EXEC_HEARTBEAT_S = env_int("DEVBENCH_EXEC_HEARTBEAT_S", 2)
DEVBENCH_EXEC_STALE_AFTER_S = env_int("DEVBENCH_EXEC_STALE_AFTER_S", 30)
# A "starting" exec no worker has claimed after this long gets its task sent again
# (claiming is conditional, so a duplicate never runs it twice).
DEVBENCH_EXEC_REDISPATCH_AFTER_S = env_int("DEVBENCH_EXEC_REDISPATCH_AFTER_S", 120)
CELERY_BEAT_SCHEDULE = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    "execution-reconcile": {
        "task": "execution.exec_reconcile",
        "schedule": float(env_int("DEVBENCH_EXEC_RECONCILE_INTERVAL_S", 15)),
        "options": {"queue": "default"},
    },
}
