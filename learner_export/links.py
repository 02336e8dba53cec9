"""Signed download links: a browser following a link cannot send an Authorization header.

A link token is `kid.payload.signature`: the payload (base64url JSON) names the caller, every
export parameter and the expiry; the signature is HMAC-SHA256 under the secret `kid` names.
Several secrets can be configured: the first signs, all of them verify, so a secret is rotated
by putting a new one first and removing the old one once its links have expired.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson

from learner_export.errors import Forbidden, LinkExpired

DOWNLOAD_PATH = "/v1/exports/learners/download"
# The longest token the download route accepts (it sits in a URL, under the header limit).
MAX_TOKEN_CHARS = 16384


@dataclass(frozen=True, slots=True)
class Link:
    caller: str
    query: tuple[tuple[str, str], ...]
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _unb64(text: str) -> bytes:
    """Decode canonical unpadded base64url only; ValueError for anything else.

    The lenient decoder skips characters outside the alphabet and ignores unused trailing
    bits, so many strings would decode to one signature: only the one `_b64` writes is accepted.
    """
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data


def link_url(public_url: str | None, token: str) -> str:
    """Where a link token is followed: under EXPORT_PUBLIC_URL, or relative to the service.

    Never built from the request's Host header, which the caller chooses.
    """
    base = public_url.rstrip("/") if public_url else ""
    return f"{base}{DOWNLOAD_PATH}?link={token}"


def parse_secrets(spec: str) -> dict[str, bytes]:
    """`kid:secret,kid:secret`, in order of preference: the first one signs."""
    keys: dict[str, bytes] = {}
    for item in spec.split(","):
        kid, sep, secret = item.strip().partition(":")
        if not item.strip():
            continue
        if not sep or not kid or len(secret) < 32 or "." in kid:
            raise ValueError(
                "EXPORT_LINK_SECRETS: expected kid:secret pairs, secrets of at least"
                " 32 characters, kids without dots"
            )
        keys[kid] = secret.encode()
    return keys


class LinkSigner:
    def __init__(self, secrets: Mapping[str, bytes]) -> None:
        if not secrets:
            raise ValueError("no link secret configured")
        self._secrets = dict(secrets)
        self._signing_kid = next(iter(self._secrets))

    def _mac(self, kid: str, signed: str) -> bytes:
        return hmac.new(self._secrets[kid], signed.encode(), hashlib.sha256).digest()

    def sign(self, caller: str, query: Sequence[tuple[str, str]], expires_at: int) -> str:
        payload = _b64(orjson.dumps({"sub": caller, "exp": expires_at, "q": list(query)}))
        signed = f"{self._signing_kid}.{payload}"
        return f"{signed}.{_b64(self._mac(self._signing_kid, signed))}"

    def verify(self, token: str, now: float | None = None) -> Link:
        """The link's contents; Forbidden for anything altered or unknown, LinkExpired after
        its expiry (checked only once the signature holds)."""
        kid, _, rest = token.partition(".")
        payload, _, signature = rest.partition(".")
        if not (kid and payload and signature):
            raise Forbidden("malformed download link")
        if kid not in self._secrets:
            raise Forbidden("download link signed with a key no longer accepted")
        try:
            given = _unb64(signature)
        except ValueError:
            raise Forbidden("download link signature invalid") from None
        if not hmac.compare_digest(given, self._mac(kid, f"{kid}.{payload}")):
            raise Forbidden("download link signature invalid")
        try:
            content = orjson.loads(_unb64(payload))
            link = Link(
                str(content["sub"]),
                tuple((str(n), str(v)) for n, v in content["q"]),
                int(content["exp"]),
            )
        except (ValueError, KeyError, TypeError):
            raise Forbidden("malformed download link") from None
        if link.expires_at <= (time.time() if now is None else now):
            raise LinkExpired("download link expired; ask for a new one")
        return link
