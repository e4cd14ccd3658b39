"""Both run modes start from one settings module; production refuses insecure defaults."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_MODE_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
)
PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'db': s.DATABASES['default']['ENGINE'], "
    "'layer': s.CHANNEL_LAYERS['default']['BACKEND'], 'inproc': s.CELERY_TASKS_IN_PROCESS, "
    "'broker': s.CELERY_BROKER_URL, 'debug': s.DEBUG}))"
)


def _run(args, **env):
    base = {k: v for k, v in os.environ.items() if k not in _MODE_VARS}
    base.update({"DJANGO_SETTINGS_MODULE": "devbench_site.settings", **env})
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )


def _prod_env(**overrides):
    env = {
        "DATABASE_URL": "postgres://devbench:devbench@127.0.0.1:5432/devbench",
        "REDIS_URL": "redis://127.0.0.1:6379/9",
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "devbench.example.com",
    }
    env.update(overrides)
    return env


def test_embedded_mode_uses_sqlite_memory_layer_and_in_process_tasks(tmp_path):
    result = _run(["-c", PROBE], DEVBENCH_VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["db"].endswith("sqlite3")
    assert probe["layer"] == "channels.layers.InMemoryChannelLayer"
    assert probe["inproc"] is True
    assert (tmp_path / "secret_key").exists()
    check = _run(["manage.py", "check"], DEVBENCH_VAR_DIR=str(tmp_path))
    assert check.returncode == 0, check.stderr


def test_production_mode_uses_postgres_redis_and_celery():
    result = _run(["-c", PROBE], **_prod_env())
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["db"].endswith("postgresql")
    # The Redis channel layer, with socket timeouts that outlast its blocking pop.
    assert probe["layer"] == "core.channel_layer.WakeupChannelLayer"
    assert probe["inproc"] is False
    assert probe["broker"].startswith("redis://")
    assert probe["debug"] is False


def test_production_check_deploy_is_clean():
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **_prod_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"SECRET_KEY": "django-insecure-" + "x" * 60}, "SECRET_KEY"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"DEBUG": "true"}, "DEBUG"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS"),
        ({"ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS"),
        ({"DATABASE_URL": "mysql://x@y/z"}, "postgres://"),
        ({"REDIS_URL": ""}, "both DATABASE_URL and REDIS_URL"),
        ({"DEBUG": "maybe"}, "boolean"),
        ({"DATABASE_PREPARED_STATEMENTS": "sometimes"}, "DATABASE_PREPARED_STATEMENTS"),
        # A pool of no threads would fail every request given to it, not the start.
        (
            {"DEVBENCH_WEB_ENGINE_READ_THREADS": "0"},
            "DEVBENCH_WEB_ENGINE_READ_THREADS must be at least 1, got 0",
        ),
        ({"DEVBENCH_WEB_QUICK_THREADS": "-1"}, "DEVBENCH_WEB_QUICK_THREADS must be at least 1"),
        ({"DEVBENCH_RUNC_STARTS": "0"}, "DEVBENCH_RUNC_STARTS must be at least 1, got 0"),
        ({"DEVBENCH_WEB_THREADS": "many"}, "DEVBENCH_WEB_THREADS must be an integer"),
    ],
)
def test_production_refuses_insecure_or_broken_configuration(overrides, message):
    result = _run(["manage.py", "check"], **_prod_env(**overrides))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


# The compiled list queries (core.prepared) on SQLite: values such as datetimes are passed
# as the backend takes them, so a keyset page after a cursor works in embedded mode too.
EMBEDDED_PAGES = """
import django, json
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from core.pagination import PageQuery
from tenants.models import Tenant
from tenants.principal import system_principal
from workspaces.models import Workspace
from workspaces.selectors import workspace_page
tenant = Tenant.objects.create(slug="t", name="t")
for i in range(5):
    Workspace.objects.create(tenant=tenant, image_ref="x", status="running", alias=f"w{i}")
actor, cursor, seen = system_principal(tenant), None, []
while True:
    page = workspace_page(actor=actor, page=PageQuery(limit=2, cursor=cursor))
    seen += [w.alias for w in page.items]
    if page.next_cursor is None:
        break
    cursor = page.next_cursor
print(json.dumps(seen))
"""


def test_embedded_mode_pages_the_compiled_list(tmp_path):
    result = _run(["-c", EMBEDDED_PAGES], DEVBENCH_VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["w4", "w3", "w2", "w1", "w0"]


DB_OPTIONS_PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "o = s.DATABASES['default'].get('OPTIONS', {}); "
    "print(json.dumps([o.get('server_side_binding'), o.get('prepare_threshold')]))"
)


@pytest.mark.parametrize(
    ("flag", "expected"), [(None, [True, 5]), ("false", [None, None]), ("true", [True, 5])]
)
def test_prepared_statements_are_on_unless_turned_off(flag, expected):
    env = _prod_env() if flag is None else _prod_env(DATABASE_PREPARED_STATEMENTS=flag)
    result = _run(["-c", DB_OPTIONS_PROBE], **env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected
