"""EXPORT_JWKS_URL: Supabase's signing keys fetched from a JWKS served here, rotated mid-test
without a restart (ES256 and RS256), fetched again at most once per interval however many
unknown kids arrive, a key no longer published refused; a JWKS that cannot be fetched at start
is one log sentence, and tokens with known keys keep working."""

from __future__ import annotations

import contextlib
import http.server
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import Database, LiveServer, server_process, wait_for
from tests.db.test_tokens import assert_401, es256, export, public_jwk, rs256

KEY_2026 = ec.generate_private_key(ec.SECP256R1())
KEY_2027 = ec.generate_private_key(ec.SECP256R1())
RSA_2027 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWK_2026 = public_jwk(KEY_2026, "2026", "ES256")
JWK_2027 = public_jwk(KEY_2027, "2027", "ES256")
RSA_JWK_2027 = public_jwk(RSA_2027, "rsa-2027", "RS256")


@dataclass
class JwksServer:
    """What the platform publishes at /auth/v1/.well-known/jwks.json, changed by the test."""

    url: str
    keys: list[dict[str, Any]]
    status: int = 200
    fetches: list[float] = field(default_factory=list)


@contextlib.contextmanager
def jwks_server(keys: list[dict[str, Any]], status: int = 200) -> Iterator[JwksServer]:
    state = JwksServer("", list(keys), status)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.fetches.append(time.monotonic())
            # Supabase publishes its keys as Supabase's own JWK objects (key_ops, ext).
            body = json.dumps(
                {"keys": [{**k, "key_ops": ["verify"], "ext": True} for k in state.keys]}
            ).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/auth/v1/.well-known/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_a_rotation_needs_no_restart(
    start_server: Callable[..., LiveServer], database: Database
) -> None:
    with jwks_server([JWK_2026]) as platform:
        service = start_server(
            jwt_secret="", jwks_url=platform.url, jwks_refetch_seconds=2, jwks_max_age_seconds=600
        )
        assert len(platform.fetches) == 1  # at start
        admin = database.admin_id
        assert export(service, es256(admin, kid="2026", key=KEY_2026)).status_code == 200
        assert len(platform.fetches) == 1  # a known kid needs no fetch

        # The platform rotates: a new ES256 key signs, the old one is still published. (Past
        # the refetch interval since the fetch at start: within it, the keys held are all.)
        platform.keys = [JWK_2027, JWK_2026]
        time.sleep(2.1)
        assert export(service, es256(admin, kid="2027", key=KEY_2027)).status_code == 200
        assert len(platform.fetches) == 2
        assert export(service, es256(admin, kid="2026", key=KEY_2026)).status_code == 200

        # Unknown kids in a burst: each token refused, the JWKS fetched at most once per
        # interval (the burst may outlast one on a busy machine), the first time at once.
        platform.keys = [RSA_JWK_2027, JWK_2027]
        time.sleep(2.1)
        before = len(platform.fetches)
        started = time.monotonic()
        for n in range(20):
            response = export(service, es256(admin, kid=f"forged-{n}", key=KEY_2026))
            assert_401(response, "unknown signing key")
        burst = platform.fetches[before:]
        assert 1 <= len(burst) <= 1 + (time.monotonic() - started) / 2
        # (As the JWKS server saw them: a little later than the service's own clock.)
        assert all(b - a > 1.9 for a, b in itertools.pairwise(platform.fetches))
        # The fetch the first forged kid caused brought the RSA key: RS256 works too.
        fetched = len(platform.fetches)
        assert export(service, rs256(admin, kid="rsa-2027", key=RSA_2027)).status_code == 200
        assert len(platform.fetches) == fetched


def test_a_key_no_longer_published_stops_verifying(
    start_server: Callable[..., LiveServer], database: Database
) -> None:
    with jwks_server([JWK_2027, JWK_2026]) as platform:
        service = start_server(
            jwt_secret="", jwks_url=platform.url, jwks_refetch_seconds=1, jwks_max_age_seconds=1
        )
        old = es256(database.admin_id, kid="2026", key=KEY_2026)
        assert export(service, old).status_code == 200
        platform.keys = [JWK_2027]  # the platform revoked 2026
        time.sleep(1.1)
        assert_401(export(service, old), "unknown signing key")
        assert (
            export(service, es256(database.admin_id, kid="2027", key=KEY_2027)).status_code == 200
        )


def test_a_jwks_that_cannot_be_fetched_at_start(database: Database) -> None:
    with jwks_server([JWK_2026], status=503) as platform:
        env = {"EXPORT_JWKS_URL": platform.url, "EXPORT_JWKS_REFETCH_SECONDS": "1"}
        with server_process(database, **env) as service:
            warnings = [line for line in service.logs().splitlines() if "JWKS" in line]
            assert len(warnings) == 1
            assert (
                "the JWKS at EXPORT_JWKS_URL could not be fetched (EXPORT_JWKS_URL answered"
                " HTTP 503); tokens are verified with the 0 key(s) known so far, and it is"
                " fetched again when a token names a key it does not hold"
            ) in warnings[0]
            # The shared secret's tokens are served meanwhile.
            with service.client() as client:
                response = client.get("/v1/exports/learners", params={"limit": "1"})
            assert response.status_code == 200, response.text
            token = es256(database.admin_id, kid="2026", key=KEY_2026)
            headers = {"Authorization": f"Bearer {token}"}
            url = f"{service.url}/v1/exports/learners?limit=1"
            assert httpx.get(url, headers=headers).status_code == 401
            platform.status = 200  # the platform is back
            assert wait_for(lambda: httpx.get(url, headers=headers).status_code == 200, 10)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/jwks.json",
        "ftp://127.0.0.1/jwks.json",
        "file:///etc/jwks.json",
    ],
)
def test_a_jwks_url_must_be_https_unless_on_loopback(url: str) -> None:
    from learner_export.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="EXPORT_JWKS_URL must be an https:// URL"):
        load_settings(jwks_url=url)
