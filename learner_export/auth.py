"""Bearer tokens: Supabase-style JWTs whose `sub` names the caller (a profile id, as the adapter's
learner_export.caller_role and export_scope understand it), signed either with the shared HS256
secret or (Supabase's newer signing keys) by an ES256/RS256 key of a JWKS, read from a file or a
string, or fetched from EXPORT_JWKS_URL and fetched again when a token names a key it does not
hold; scripts' keys (learner_export.keys); and the cache of callers' roles."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from learner_export.config import Settings
from learner_export.errors import DATABASE_ERRORS, Unauthorized, database_error
from learner_export.keys import caller_for_key, is_key

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("learner_export.auth")


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized(
            "missing Authorization header; send 'Authorization: Bearer <JWT or key>'"
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <JWT>'")
    return token.strip()


SHARED_SECRET_ALGORITHM = "HS256"
# The asymmetric algorithms accepted, each with the only JWK key type that may verify it.
KEY_ALGORITHMS: Mapping[str, str] = {"ES256": "EC", "RS256": "RSA"}
MIN_SECRET_CHARS = 32
MIN_RSA_BITS = 2048
JWKS_FETCH_SECONDS = 5.0
MAX_JWKS_BYTES = 256 * 1024


def load_jwks(text: str, source: str, *, allow_empty: bool = False) -> dict[str, jwt.PyJWK]:
    """The signing keys of a JWKS document by kid; ValueError, naming `source`, if unusable."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{source} is not valid JSON: {exc}") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'{source} must be a JSON object {{"keys": [...]}}')
    keys: dict[str, jwt.PyJWK] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{source}: key {index} is not a JSON object")
        if entry.get("use", "sig") != "sig":
            continue  # an encryption key published beside the signing keys
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValueError(f"{source}: key {index} has no kid (tokens choose their key by kid)")
        if kid in keys:
            raise ValueError(f"{source}: kid {kid!r} appears twice")
        keys[kid] = _signing_key(entry, f"{source}: key {kid!r}")
    if not keys and not allow_empty:
        raise ValueError(f"{source} holds no signing keys")
    return keys


def _signing_key(entry: dict[str, Any], where: str) -> jwt.PyJWK:
    kty = entry.get("kty")
    if kty not in KEY_ALGORITHMS.values():
        raise ValueError(
            f"{where} has kty {kty!r}; only EC (ES256) and RSA (RS256) keys belong "
            "in a JWKS (an HS256 secret goes in EXPORT_JWT_SECRET)"
        )
    alg = entry.get("alg", "ES256" if kty == "EC" else "RS256")
    if not isinstance(alg, str) or KEY_ALGORITHMS.get(alg) != kty:
        raise ValueError(
            f"{where} has alg {alg!r}, which a {kty} key may not verify "
            "(ES256 needs an EC P-256 key, RS256 an RSA key)"
        )
    if kty == "EC" and entry.get("crv") != "P-256":
        raise ValueError(f"{where}: ES256 needs the P-256 curve, not {entry.get('crv')!r}")
    try:
        key = jwt.PyJWK(entry, alg)
    except jwt.PyJWTError as exc:
        raise ValueError(f"{where} is not a valid {alg} key: {exc}") from None
    if not isinstance(key.key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ValueError(f"{where} holds a private key; publish only the public half")
    if isinstance(key.key, rsa.RSAPublicKey) and key.key.key_size < MIN_RSA_BITS:
        raise ValueError(
            f"{where} is a {key.key.key_size}-bit RSA key; at least "
            f"{MIN_RSA_BITS} bits are required"
        )
    return key


class TokenVerifier:
    """Checks bearer tokens: HS256 only with the shared secret, ES256/RS256 only with the JWKS
    key that the token's `kid` names and whose algorithm is the token's. Built once per app."""

    def __init__(
        self,
        *,
        secret: str = "",
        keys: Mapping[str, jwt.PyJWK] | None = None,
        audience: str = "authenticated",
        leeway_seconds: int = 30,
        jwks_url: str | None = None,
        refetch_seconds: float = 30.0,
        max_age_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if secret and len(secret) < MIN_SECRET_CHARS:
            raise ValueError(
                f"EXPORT_JWT_SECRET must be at least {MIN_SECRET_CHARS} characters "
                "(or unset, to accept only tokens signed by a JWKS key)"
            )
        if not secret and not keys and not jwks_url:
            raise ValueError(
                f"no way to verify tokens: set EXPORT_JWT_SECRET (HS256, at least "
                f"{MIN_SECRET_CHARS} characters) or a JWKS (EXPORT_JWKS_URL, "
                "EXPORT_JWKS_FILE or EXPORT_JWKS), or both"
            )
        self._secret = secret
        self._keys = dict(keys or {})
        self._audience = audience
        self._leeway = leeway_seconds
        # The keys of EXPORT_JWKS_URL as last fetched; replaced whole by each good fetch, so a
        # key the platform stops publishing stops verifying (by max_age_seconds at the latest).
        self._jwks_url = jwks_url
        self._fetched: dict[str, jwt.PyJWK] = {}
        self._refetch_seconds = refetch_seconds
        self._max_age = max_age_seconds
        self._clock = clock
        self._fetched_at: float | None = None  # the last good fetch
        self._attempted_at: float | None = None  # the last fetch, good or not
        self._fetching: asyncio.Lock | None = None
        self.fetches = 0  # attempts, for tests and the curious

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        """The verifier for these settings, reading and parsing the JWKS once (then cached)."""
        return _verifier(
            settings.jwt_secret.get_secret_value(),
            settings.jwt_audience,
            settings.jwt_leeway_seconds,
            settings.jwks_file,
            settings.jwks,
            settings.jwks_url,
            settings.jwks_refetch_seconds,
            settings.jwks_max_age_seconds,
        )

    @property
    def algorithms(self) -> frozenset[str]:
        """The `alg` values this verifier can accept at all."""
        accepted = {SHARED_SECRET_ALGORITHM} if self._secret else set()
        keys = [*self._keys.values(), *self._fetched.values()]
        return frozenset(accepted | {key.algorithm_name for key in keys})

    @property
    def kids(self) -> frozenset[str]:
        """The kids of every key held now (configured and fetched)."""
        return frozenset(self._keys) | frozenset(self._fetched)

    def _install(self, text: str) -> None:
        assert self._jwks_url is not None
        self._fetched = load_jwks(text, f"EXPORT_JWKS_URL {self._jwks_url}", allow_empty=True)
        self._fetched_at = self._clock()

    def _fetch_failed(self, exc: Exception) -> None:
        reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        log.warning(
            f"the JWKS at EXPORT_JWKS_URL could not be fetched ({reason[:300]}); tokens are "
            f"verified with the {len(self.kids)} key(s) known so far, and it is fetched again "
            "when a token names a key it does not hold"
        )

    def fetch(self) -> bool:
        """Fetch EXPORT_JWKS_URL now, blocking (at start); False, logged, when that failed."""
        if self._jwks_url is None:
            return False
        # Imported here: a serving process without EXPORT_JWKS_URL never needs httpx, which
        # costs 5 MB of RSS (9 MB where rich and pygments are installed: it imports its
        # command line's too).
        import httpx

        self._attempted_at, self.fetches = self._clock(), self.fetches + 1
        try:
            with httpx.Client(timeout=JWKS_FETCH_SECONDS, follow_redirects=False) as client:
                self._install(_jwks_text(client.get(self._jwks_url)))
        except (httpx.HTTPError, ValueError) as exc:
            self._fetch_failed(exc)
            return False
        return True

    async def refresh(self) -> bool:
        """Fetch EXPORT_JWKS_URL again unless a fetch was tried less than refetch_seconds ago
        (then, or when it fails, the keys held stay); True when new keys were installed."""
        if self._jwks_url is None:
            return False
        import httpx  # as in fetch()

        if self._fetching is None:
            self._fetching = asyncio.Lock()
        async with self._fetching:
            now = self._clock()
            if self._attempted_at is not None and now - self._attempted_at < self._refetch_seconds:
                return False
            self._attempted_at, self.fetches = now, self.fetches + 1
            try:
                async with httpx.AsyncClient(
                    timeout=JWKS_FETCH_SECONDS, follow_redirects=False
                ) as client:
                    self._install(_jwks_text(await client.get(self._jwks_url)))
            except (httpx.HTTPError, ValueError) as exc:
                self._fetch_failed(exc)
                return False
        return True

    async def verify_async(self, token: str) -> str:
        """verify(), fetching the JWKS again first when the token names a kid not held (a
        rotation) or the keys held are older than max_age_seconds (a revocation)."""
        if self._jwks_url is not None:
            stale = self._fetched_at is None or self._clock() - self._fetched_at > self._max_age
            if stale or self._names_unknown_kid(token):
                await self.refresh()
        return self.verify(token)

    def _names_unknown_kid(self, token: str) -> bool:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return False
        kid = header.get("kid")
        return header.get("alg") in KEY_ALGORITHMS and isinstance(kid, str) and kid not in self.kids

    def verify(self, token: str) -> str:
        """Check algorithm, key, signature, expiry, not-before and audience; return the subject
        (a profile id). Every failure is Unauthorized with a short reason."""
        key, algorithm = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                # One algorithm, fixed by the key: the token's header never chooses how a key is
                # used, so a public key can never become an HMAC secret.
                algorithms=[algorithm],
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("token audience not accepted") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("token signature invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthorized("token algorithm not allowed") from None
        except jwt.PyJWTError:
            raise Unauthorized("malformed or unacceptable token") from None
        try:
            return str(uuid.UUID(str(claims["sub"])))
        except ValueError:
            raise Unauthorized("token subject is not a UUID") from None

    def _key_for(self, token: str) -> tuple[Any, str]:
        """The shared secret or the JWKS key for this token's header, with the one algorithm it
        verifies; or Unauthorized."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise Unauthorized("malformed token: its header names no alg")
        if alg.lower() == "none":
            raise Unauthorized("algorithm not allowed: 'none' (an unsigned, malformed token)")
        if alg == SHARED_SECRET_ALGORITHM and self._secret:
            return self._secret, SHARED_SECRET_ALGORITHM
        if alg not in KEY_ALGORITHMS or not (self._keys or self._jwks_url):
            raise Unauthorized(f"algorithm not allowed: {alg[:20]!r}")
        kid = header.get("kid")
        key = None
        if isinstance(kid, str):
            key = self._fetched.get(kid) or self._keys.get(kid)
        if key is None:
            raise Unauthorized("unknown signing key (the token's kid names no key we know)")
        if key.algorithm_name != alg:
            raise Unauthorized(f"algorithm not allowed: {alg} with a {key.algorithm_name} key")
        return key.key, key.algorithm_name


def _jwks_text(response: httpx.Response) -> str:
    if response.status_code != 200:
        raise ValueError(f"EXPORT_JWKS_URL answered HTTP {response.status_code}")
    if len(response.content) > MAX_JWKS_BYTES:
        raise ValueError(f"EXPORT_JWKS_URL sent more than {MAX_JWKS_BYTES} bytes")
    return response.text


# Keyed by the values that shape a verifier, so apps of one configuration share one; unbounded, as
# a process has one configuration (a few in tests). A JWKS file is read once: restart to rotate
# (EXPORT_JWKS_URL is fetched again as keys rotate).
@functools.cache
def _verifier(
    secret: str,
    audience: str,
    leeway_seconds: int,
    jwks_file: Path | None,
    jwks: str | None,
    jwks_url: str | None = None,
    refetch_seconds: float = 30.0,
    max_age_seconds: float = 600.0,
) -> TokenVerifier:
    if jwks_file is not None and jwks:
        raise ValueError("set EXPORT_JWKS_FILE or EXPORT_JWKS, not both")
    keys: dict[str, jwt.PyJWK] = {}
    if jwks_file is not None:
        try:
            text = jwks_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"EXPORT_JWKS_FILE {str(jwks_file)!r} cannot be read: {exc}") from None
        keys = load_jwks(text, f"EXPORT_JWKS_FILE {str(jwks_file)!r}")
    elif jwks:
        keys = load_jwks(jwks, "EXPORT_JWKS")
    verifier = TokenVerifier(
        secret=secret,
        keys=keys,
        audience=audience,
        leeway_seconds=leeway_seconds,
        jwks_url=jwks_url,
        refetch_seconds=refetch_seconds,
        max_age_seconds=max_age_seconds,
    )
    verifier.fetch()
    return verifier


async def authenticate(state: Any, authorization: str | None, *, keys: bool = True) -> str:
    """The caller of a request, from its Authorization header and the app's state: a script's
    key (its owner, naming the key) or a token's subject. Unauthorized (401) otherwise; with
    `keys` False, a key is refused too."""
    token = bearer_token(authorization)
    if is_key(token):
        if not keys:
            raise Unauthorized(
                "a script's key cannot make download links (links are for browsers); "
                "export with the key directly"
            )
        return await caller_for_key(state.pool, token, state.settings.acquire_timeout_seconds)
    verifier: TokenVerifier = state.verifier
    return await verifier.verify_async(token)


RoleLookup = Callable[[str], Awaitable[str | None]]


class RoleCache:
    """Callers' role labels (learner_export.caller_role) by id, kept for `ttl` seconds, for the
    audit trail and the logs. Who may export what is decided by the database at every page
    (learner_export.export_scope), never from this cache."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[str | None, float]] = {}

    async def role(self, caller_id: str, lookup: RoleLookup) -> str | None:
        now = self._clock()
        cached = self._entries.get(caller_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        role = await lookup(caller_id)
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[caller_id] = (role, now + self._ttl)
        return role


async def caller_role(pool: asyncpg.Pool, caller_id: str, wait: float) -> str | None:
    """The caller's role label, from the adapter (None: no such caller)."""
    try:
        async with pool.acquire(timeout=wait) as conn:
            role: str | None = await conn.fetchval(
                "SELECT learner_export.caller_role($1::uuid)", caller_id, timeout=wait
            )
    except DATABASE_ERRORS as exc:
        error = database_error(exc, "reading the caller's role")
        if error is None:
            raise
        raise error from exc
    return role


def issue_token(
    secret: str, subject: str, *, audience: str = "authenticated", ttl_seconds: int = 3600
) -> str:
    """A token like Supabase's for local use (`learner-export token`, the demo, the tests)."""
    now = int(time.time())
    claims = {
        "sub": subject,
        "aud": audience,
        "role": "authenticated",
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm="HS256")
