"""Token verification without a server: garbage is a 401, never an error; keys not for signing
are skipped; start-up needs a secret or a usable JWKS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from learner_export.api.app import create_app
from learner_export.auth import TokenVerifier, load_jwks
from learner_export.config import Settings
from learner_export.errors import Unauthorized
from tests.conftest import JWT_SECRET
from tests.db.test_tokens import (
    EC_JWK,
    EC_KID,
    JWKS,
    RSA_JWK,
    RSA_KID,
    b64url,
    private_jwk,
    public_jwk,
    segment,
    verifier,
)


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "..",
        "a.b.c",
        "e30",
        "e30.e30",
        "e30.e30.e30",
        "x" * 5000,
        segment([]) + "." + segment({}) + ".",
        segment({"alg": "ES256", "kid": {"x": 1}}) + "." + segment({}) + ".AAAA",
        segment({"alg": "ES256", "kid": EC_KID}) + "." + segment([1, 2]) + ".AAAA",
        segment({"alg": "ES256", "kid": EC_KID}) + ".!!!.AAAA",
        segment({"alg": "ES256", "kid": EC_KID, "crit": ["exp"]}) + "." + segment({}) + ".AAAA",
        segment({"alg": "RS256", "kid": RSA_KID}) + "." + segment({"exp": "soon"}) + ".AAAA",
    ],
)
def test_garbage_tokens_are_unauthorized_not_errors(token: str) -> None:
    with pytest.raises(Unauthorized):
        verifier(jwt_secret=JWT_SECRET, jwks=json.dumps(JWKS)).verify(token)


@pytest.mark.parametrize(
    ("jwks", "problem"),
    [
        ("not json", "not valid JSON"),
        ("[]", '{"keys"'),
        ('{"keys": {}}', '{"keys"'),
        ('{"keys": []}', "no signing keys"),
        ('{"keys": [1]}', "not a JSON object"),
        (json.dumps({"keys": [{k: v for k, v in EC_JWK.items() if k != "kid"}]}), "no kid"),
        (json.dumps({"keys": [EC_JWK, EC_JWK]}), "twice"),
        (json.dumps({"keys": [{**EC_JWK, "alg": "RS256"}]}), "may not verify"),
        (json.dumps({"keys": [{**EC_JWK, "alg": "HS256"}]}), "may not verify"),
        (json.dumps({"keys": [{**RSA_JWK, "alg": "ES256"}]}), "may not verify"),
        (json.dumps({"keys": [{**EC_JWK, "crv": "P-384"}]}), "P-256"),
        (
            json.dumps({"keys": [{"kty": "oct", "k": b64url(b"s" * 40), "kid": "x"}]}),
            "EXPORT_JWT_SECRET",
        ),
        (json.dumps({"keys": [{**EC_JWK, "x": "AAAA"}]}), "not a valid ES256 key"),
        (json.dumps({"keys": [private_jwk()]}), "private key"),
        (
            json.dumps(
                {"keys": [public_jwk(rsa.generate_private_key(65537, 1024), "weak", "RS256")]}
            ),
            "2048",
        ),
    ],
)
def test_unusable_jwks_is_refused_at_startup(jwks: str, problem: str) -> None:
    with pytest.raises(ValueError, match="EXPORT_JWKS") as caught:
        create_app(Settings(database_url="postgresql://unused/db", jwks=jwks))
    assert problem in str(caught.value)


def test_keys_not_for_signing_are_skipped() -> None:
    keys = load_jwks(
        json.dumps({"keys": [{**RSA_JWK, "kid": "enc", "use": "enc"}, EC_JWK]}), "test"
    )
    assert set(keys) == {EC_KID}


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({}, "EXPORT_JWT_SECRET"),
        ({"jwt_secret": "short"}, "at least 32"),
        ({"jwt_secret": "short", "jwks": json.dumps(JWKS)}, "at least 32"),
        ({"jwks": json.dumps(JWKS), "jwks_file": Path("/nonexistent/jwks.json")}, "not both"),
        ({"jwks_file": Path("/nonexistent/jwks.json")}, "cannot be read"),
    ],
)
def test_startup_needs_a_way_to_verify_tokens(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        create_app(Settings(database_url="postgresql://unused/db", **settings))


def test_app_starts_with_only_a_jwks_or_only_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(JWKS))
    for settings in ({"jwks_file": path}, {"jwks": json.dumps(JWKS)}, {"jwt_secret": JWT_SECRET}):
        app = create_app(Settings(database_url="postgresql://unused/db", **settings))
        assert isinstance(app.state.verifier, TokenVerifier)


def test_a_service_without_a_jwks_url_never_loads_httpx() -> None:
    """The serving process's RSS is bounded (benchmarks/targets.toml): httpx, needed only to
    fetch EXPORT_JWKS_URL, costs 5-9 MB of it. In a process of its own, the app is built and a
    token verified with the shared secret."""
    script = """
import sys
from learner_export.api.app import create_app
from learner_export.auth import TokenVerifier, issue_token
from learner_export.config import Settings

secret, subject = sys.argv[1], "6f1c1d2e-0d4c-4c39-9a43-1f0f7a1f2b3c"
settings = Settings(database_url="postgresql://nobody@127.0.0.1:1/none", jwt_secret=secret)
create_app(settings)
assert TokenVerifier.from_settings(settings).verify(issue_token(secret, subject)) == subject
print("httpx" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", script, JWT_SECRET], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "False\n"
