"""OIDC access tokens from the real provider open exec websockets on a live server."""

import json

import pytest
from websockets.sync.client import connect

from tests.e2e.test_ws_execs import _receive_all
from tests.factories import ExecFactory, WorkspaceFactory
from tests.identity.oidc import cli_tokens
from tests.processes import DaphneServer

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def server(oidc, transactional_db, django_db_blocker):
    from django.db import connection

    env = {"DEVBENCH_OIDC_PROVIDERS": json.dumps([oidc.app_config()])}
    daphne = DaphneServer(connection.settings_dict["NAME"], extra_env=env)
    yield daphne
    daphne.stop()


def _finished_exec(tenant):
    return ExecFactory(
        workspace=WorkspaceFactory(tenant=tenant, container_id="x"), status="completed", exit_code=0
    )


def _close_code(server, path, token, headers=None):
    auth = {"Authorization": f"Bearer {token}", **(headers or {})}
    with connect(server.ws_url(path), additional_headers=auth, open_timeout=10) as ws:
        return _receive_all(ws, timeout_s=10)


def test_provider_jwt_opens_an_exec_websocket(server, oidc, acme_beta):
    acme, beta = acme_beta["acme"], acme_beta["beta"]
    exec_ = _finished_exec(acme)
    path = f"/ws/execs/{exec_.public_id}/"

    bob = cli_tokens(oidc, login="bob")["access_token"]  # one tenant: acme (viewer)
    messages, code = _close_code(server, path, bob)
    assert code == 1000 and messages[-1]["type"] == "complete"
    assert messages[-1]["exit_code"] == 0

    alice = cli_tokens(oidc, login="alice")["access_token"]  # acme and beta
    messages, code = _close_code(server, path, alice, {"X-DevBench-Tenant": "acme"})
    assert code == 1000 and messages[-1]["type"] == "complete"
    # in beta the exec does not exist; without a tenant the token is ambiguous
    assert _close_code(server, path, alice, {"X-DevBench-Tenant": "beta"})[1] == 4404
    assert _close_code(server, f"{path}?tenant=beta", alice)[1] == 4404
    assert _close_code(server, path, alice)[1] == 4400  # tenant_required
    assert beta.slug == "beta"


def test_forged_provider_token_is_refused_on_the_websocket(server, oidc, acme_beta):
    from cryptography.hazmat.primitives.asymmetric import rsa

    exec_ = _finished_exec(acme_beta["acme"])
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = oidc.mint({"sub": "bob"}, key=other_key)
    assert _close_code(server, f"/ws/execs/{exec_.public_id}/", forged)[1] == 4401
