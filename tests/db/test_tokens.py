"""Tokens: HS256 with the shared secret, ES256/RS256 with the JWKS key their `kid` names; forged,
stale, misdirected, unsigned and algorithm-confused tokens get a 401, never a 500 or a row."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from learner_export.auth import TokenVerifier, issue_token
from learner_export.config import Settings
from tests.conftest import JWT_SECRET, LiveServer

EC_KID, RSA_KID = "ec-2026", "rsa-2026"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
# The attacker's keys: same shapes, not in the JWKS.
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, kid: str, alg: str
) -> dict[str, Any]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


EC_JWK = public_jwk(EC_KEY, EC_KID, "ES256")
RSA_JWK = public_jwk(RSA_KEY, RSA_KID, "RS256")
JWKS = {"keys": [EC_JWK, RSA_JWK]}


def pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def claims(subject: str, **changes: Any) -> dict[str, Any]:
    """Good claims for `subject`; a change to None drops that claim."""
    now = int(time.time())
    values = {
        "sub": subject,
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + 600,
        **changes,
    }
    return {k: v for k, v in values.items() if v is not None}


def es256(subject: str, kid: str | None = EC_KID, key: Any = EC_KEY, **changes: Any) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims(subject, **changes), key, algorithm="ES256", headers=headers)


def rs256(subject: str, kid: str | None = RSA_KID, key: Any = RSA_KEY, **changes: Any) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims(subject, **changes), key, algorithm="RS256", headers=headers)


def hs256_by_hand(secret: bytes, subject: str, kid: str | None = EC_KID) -> str:
    """An HS256 token whose HMAC key is `secret`, made without PyJWT (which refuses PEM keys as
    HMAC secrets when signing, as a verifier that trusted the header would not)."""
    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = f"{segment(header)}.{segment(claims(subject))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def unsigned(subject: str, header: dict[str, Any] | None = None) -> str:
    return f"{segment(header or {'alg': 'none', 'typ': 'JWT'})}.{segment(claims(subject))}."


def tampered(subject: str) -> str:
    """A genuine ES256 token whose payload is swapped after signing."""
    header, _, signature = es256(subject).split(".")
    return f"{header}.{segment(claims(subject, role='service_role', exp=2**31))}.{signature}"


def short_signature(subject: str) -> str:
    """A genuine ES256 token with the last bytes of its signature cut off."""
    header, payload, signature = es256(subject).split(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    return f"{header}.{payload}.{b64url(raw[:-2])}"


def embedded_jwk(subject: str) -> str:
    """Signed by the attacker's key, which rides along in the header as `jwk`."""
    jwk = public_jwk(OTHER_EC_KEY, EC_KID, "ES256")
    return jwt.encode(
        claims(subject), OTHER_EC_KEY, algorithm="ES256", headers={"kid": EC_KID, "jwk": jwk}
    )


@pytest.fixture(scope="module")
def jwks_file_server(
    start_server: Callable[..., LiveServer], tmp_path_factory: pytest.TempPathFactory
) -> LiveServer:
    """JWKS from a file, beside the HS256 shared secret (leeway 30 s)."""
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps(JWKS))
    return start_server(jwks_file=path)


@pytest.fixture(scope="module")
def jwks_only_server(start_server: Callable[..., LiveServer]) -> LiveServer:
    """JWKS passed as a JSON string, and no shared secret at all."""
    return start_server(jwt_secret="", jwks=json.dumps(JWKS))


SERVERS = ["jwks_file_server", "jwks_only_server"]


def export(server: LiveServer, token: str) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return client.get(
            "/v1/exports/learners",
            params={"format": "csv", "limit": "1"},
            headers={"Authorization": f"Bearer {token}"},
        )


def assert_401(response: httpx.Response, detail: str) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"] == "unauthorized"
    assert detail in body["detail"], body["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("server_name", SERVERS)
@pytest.mark.parametrize("make", [es256, rs256], ids=["ES256", "RS256"])
def test_jwks_signed_token_exports(
    request: pytest.FixtureRequest, seeded: str, server_name: str, make: Callable[[str], str]
) -> None:
    server: LiveServer = request.getfixturevalue(server_name)
    response = export(server, make(seeded))
    assert response.status_code == 200, response.text
    assert response.text.startswith("learner_id,")


def test_shared_secret_still_works_beside_a_jwks(jwks_file_server: LiveServer, seeded: str) -> None:
    assert export(jwks_file_server, issue_token(JWT_SECRET, seeded)).status_code == 200


def test_without_a_shared_secret_hs256_is_refused(
    jwks_only_server: LiveServer, seeded: str
) -> None:
    assert_401(export(jwks_only_server, issue_token(JWT_SECRET, seeded)), "algorithm not allowed")


@pytest.mark.parametrize("server_name", SERVERS)
@pytest.mark.parametrize(
    ("make", "detail"),
    [
        pytest.param(lambda s: es256(s, key=OTHER_EC_KEY), "signature", id="forged-es256"),
        pytest.param(lambda s: rs256(s, key=OTHER_RSA_KEY), "signature", id="forged-rs256"),
        pytest.param(tampered, "signature", id="payload-swapped"),
        pytest.param(embedded_jwk, "signature", id="attacker-jwk-in-header"),
        pytest.param(short_signature, "signature", id="signature-truncated"),
        pytest.param(lambda s: es256(s) + "x", "malformed", id="signature-not-base64"),
        pytest.param(lambda s: es256(s, exp=int(time.time()) - 120), "expired", id="expired-es256"),
        pytest.param(lambda s: rs256(s, exp=int(time.time()) - 120), "expired", id="expired-rs256"),
        pytest.param(
            lambda s: es256(s, nbf=int(time.time()) + 120), "not yet valid", id="nbf-future"
        ),
        pytest.param(
            lambda s: es256(s, iat=int(time.time()) + 120), "not yet valid", id="iat-future"
        ),
        pytest.param(lambda s: es256(s, aud="anon"), "audience", id="audience-anon"),
        pytest.param(lambda s: rs256(s, aud=["anon", "service"]), "audience", id="audience-list"),
        pytest.param(lambda s: es256(s, aud=None), "'aud'", id="no-aud"),
        pytest.param(lambda s: es256(s, exp=None), "'exp'", id="no-exp"),
        pytest.param(lambda s: es256(s, sub=None), "'sub'", id="no-sub"),
        pytest.param(lambda s: es256("not-a-uuid"), "UUID", id="sub-not-uuid"),
        pytest.param(
            lambda s: es256(s, kid="retired-key"), "unknown signing key", id="unknown-kid"
        ),
        pytest.param(lambda s: es256(s, kid=None), "unknown signing key", id="no-kid"),
        pytest.param(
            lambda s: unsigned(s, {"alg": "ES256", "kid": [EC_KID]}) + "AAAA",
            "malformed",
            id="kid-list",
        ),
        pytest.param(
            lambda s: unsigned(s, {"alg": "ES256", "kid": 7}) + "AAAA", "malformed", id="kid-number"
        ),
        pytest.param(
            lambda s: rs256(s, kid=EC_KID), "algorithm not allowed", id="rs256-kid-of-ec-key"
        ),
        pytest.param(
            lambda s: es256(s, kid=RSA_KID), "algorithm not allowed", id="es256-kid-of-rsa-key"
        ),
        pytest.param(
            lambda s: jwt.encode(claims(s), RSA_KEY, algorithm="PS256", headers={"kid": RSA_KID}),
            "algorithm not allowed",
            id="ps256",
        ),
        pytest.param(
            lambda s: jwt.encode(claims(s), JWT_SECRET * 2, algorithm="HS512"),
            "algorithm not allowed",
            id="hs512",
        ),
        pytest.param(unsigned, "algorithm not allowed", id="alg-none"),
        pytest.param(
            lambda s: unsigned(s, {"alg": "none", "typ": "JWT", "kid": EC_KID}),
            "algorithm not allowed",
            id="alg-none-with-kid",
        ),
        pytest.param(
            lambda s: unsigned(s, {"alg": "NoNe", "typ": "JWT"}),
            "algorithm not allowed",
            id="alg-NoNe",
        ),
        pytest.param(
            lambda s: unsigned(s, {"alg": ["ES256"], "kid": EC_KID}), "malformed", id="alg-list"
        ),
        pytest.param(lambda s: "e30.e30.", "malformed", id="no-alg"),
    ],
)
def test_bad_token_gets_401(
    request: pytest.FixtureRequest,
    seeded: str,
    server_name: str,
    make: Callable[[str], str],
    detail: str,
) -> None:
    server: LiveServer = request.getfixturevalue(server_name)
    assert_401(export(server, make(seeded)), detail)


@pytest.mark.parametrize(
    "secret",
    [
        pem(EC_KEY),
        json.dumps(EC_JWK).encode(),
        pem(RSA_KEY),
        json.dumps(RSA_JWK).encode(),
        json.dumps(JWKS).encode(),
    ],
    ids=["ec-pem", "ec-jwk-json", "rsa-pem", "rsa-jwk-json", "jwks-json"],
)
@pytest.mark.parametrize("kid", [EC_KID, RSA_KID, None])
@pytest.mark.parametrize(
    ("server_name", "detail"),
    # With a shared secret the token is checked against that secret (and fails); without one
    # HS256 is not accepted at all. Neither path lets public key material act as an HMAC key.
    [("jwks_file_server", "signature"), ("jwks_only_server", "algorithm not allowed")],
)
def test_algorithm_confusion_gets_401(
    request: pytest.FixtureRequest,
    seeded: str,
    server_name: str,
    detail: str,
    secret: bytes,
    kid: str | None,
) -> None:
    server: LiveServer = request.getfixturevalue(server_name)
    assert_401(export(server, hs256_by_hand(secret, seeded, kid)), detail)


@pytest.mark.parametrize("server_name", SERVERS)
def test_clock_skew_within_leeway_is_accepted(
    request: pytest.FixtureRequest, seeded: str, server_name: str
) -> None:
    server: LiveServer = request.getfixturevalue(server_name)
    assert server.settings.jwt_leeway_seconds == 30
    now = int(time.time())
    assert export(server, es256(seeded, exp=now - 10)).status_code == 200
    assert export(server, rs256(seeded, nbf=now + 10, iat=now + 10)).status_code == 200


def test_leeway_is_configurable(start_server: Callable[..., LiveServer], seeded: str) -> None:
    strict = start_server(jwks=json.dumps(JWKS), jwt_leeway_seconds=0)
    assert_401(export(strict, es256(seeded, exp=int(time.time()) - 10)), "expired")


def test_the_app_parses_its_jwks_once(jwks_file_server: LiveServer) -> None:
    verifier = jwks_file_server.app.state.verifier
    assert isinstance(verifier, TokenVerifier)
    assert TokenVerifier.from_settings(jwks_file_server.settings) is verifier
    assert verifier.algorithms == {"HS256", "ES256", "RS256"}


# Unit level: the verifier without a server.


def verifier(**settings: Any) -> TokenVerifier:
    return TokenVerifier.from_settings(Settings(**settings))


def test_valid_tokens_yield_the_subject(seeded: str) -> None:
    check = verifier(jwt_secret=JWT_SECRET, jwks=json.dumps(JWKS))
    for token in (es256(seeded), rs256(seeded), issue_token(JWT_SECRET, seeded)):
        assert check.verify(token) == seeded


def private_jwk() -> dict[str, Any]:
    return {**ECAlgorithm.to_jwk(EC_KEY, as_dict=True), "kid": "leaked", "alg": "ES256"}
