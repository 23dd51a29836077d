"""Authentication: argon2 password hashes, short-lived JWT access tokens, revocable refresh tokens.

* Access token: HS256 JWT (``typ=access``, ``sub``, ``role``, ``sid``, ``exp``), verified
  statelessly on every request, so reads keep working while Redis is down. Lifetime
  ``api.access_token_ttl_s`` (15 min by default) bounds how long a logged-out token lives.
* Refresh token: JWT (``typ=refresh``, ``sid``, ``jti``) that is only valid while its session
  exists in Redis (``session:{sid}``) *and* names the session's current ``jti``. Refreshing
  rotates the jti; presenting an old one again is treated as theft and revokes the session.
  Logout deletes the session. Sessions need Redis: login/refresh answer 503 without it.
* Ending a session (logout, or an old refresh token presented again) also puts its id on a
  denylist (``revoked:session:{sid}``) for one access-token lifetime, so the session's access
  tokens answer 401 at once. The check is one Redis read per request; while Redis is down it is
  skipped (fail open: the stateless verification above still holds). The request edge
  (``RateLimitMiddleware``) makes that read in the same Redis round trip as the rate limits.
* A verified access token is remembered (bounded, until its ``exp``): the signature is checked
  once per token, not once per request.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from api.cache import RedisDown, RedisGateway
from api.errors import ServiceUnavailable, Unauthorized
from core.keys import revoked_session_key, session_key
from core.settings import APISettings

Role = Literal["student", "instructor", "admin"]
ISSUER = "lakehouse-api"
ALGORITHM = "HS256"
_hasher = PasswordHasher()
# Verified against when the email is unknown, so a login's timing does not reveal accounts.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
_VERIFIED_TOKENS_MAX = 50_000


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request."""

    user_id: uuid.UUID
    role: Role
    session_id: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


class TokenService:
    def __init__(self, settings: APISettings, redis: RedisGateway, *, secret: str) -> None:
        self.settings = settings
        self.redis = redis
        self._secret = secret
        # token -> (caller, exp): tokens are immutable, so one verification holds until exp.
        self._verified: dict[str, tuple[Principal, float]] = {}

    # ---- encoding --------------------------------------------------------------------------
    def _encode(self, claims: dict, ttl_s: int) -> str:
        now = int(time.time())
        return jwt.encode({**claims, "iss": ISSUER, "iat": now, "exp": now + ttl_s}, self._secret, ALGORITHM)

    def _decode(self, token: str, typ: str) -> dict:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "typ", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized(f"The {typ} token has expired.") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"The {typ} token is invalid.") from exc
        if claims.get("typ") != typ:
            raise Unauthorized(f"{'An' if typ[0] in 'aeiou' else 'A'} {typ} token is required.")
        return claims

    def access_token(self, *, user_id: uuid.UUID, role: Role, session_id: str) -> str:
        claims = {"sub": str(user_id), "role": role, "sid": session_id, "typ": "access"}
        return self._encode(claims, self.settings.access_token_ttl_s)

    def principal(self, token: str) -> Principal:
        """Verifies an access token (signature, expiry, issuer, type) and returns its caller."""
        known = self._verified.get(token)
        if known is not None and known[1] > time.time():
            return known[0]
        claims = self._decode(token, "access")
        try:
            principal = Principal(uuid.UUID(claims["sub"]), claims["role"], str(claims.get("sid", "")))
        except (ValueError, KeyError) as exc:
            raise Unauthorized("The access token is invalid.") from exc
        if len(self._verified) >= _VERIFIED_TOKENS_MAX:
            self._verified.clear()  # crude but bounded; refilled by the next requests
        self._verified[token] = (principal, float(claims["exp"]))
        return principal

    async def arequire_live_session(self, principal: Principal) -> None:
        """``require_live_session`` on the event loop."""
        if not principal.session_id:
            return
        key = self.redis.key(revoked_session_key(principal.session_id))
        try:
            revoked = await self.redis.acall("session_revoked", lambda c: c.exists(key))
        except RedisDown:
            return
        if revoked:
            raise Unauthorized("The session of this access token has ended; log in again.")

    def require_live_session(self, principal: Principal) -> None:
        """Refuses an access token whose session has ended (logout, refresh-token reuse)."""
        if not principal.session_id:
            return
        key = self.redis.key(revoked_session_key(principal.session_id))
        try:
            revoked = self.redis.call("session_revoked", lambda c: c.exists(key))
        except RedisDown:
            return
        if revoked:
            raise Unauthorized("The session of this access token has ended; log in again.")

    def peek_user_id(self, token: str) -> str | None:
        """The verified subject of an access token, or None (used by the rate limiter)."""
        try:
            return str(self.principal(token).user_id)
        except Unauthorized:
            return None

    # ---- sessions ---------------------------------------------------------------------------
    def _session_key(self, session_id: str) -> str:
        return self.redis.key(session_key(session_id))

    def _end_session(self, session_id: str) -> None:
        """Deletes the session and denylists its access tokens for as long as one can live."""
        key, revoked = self._session_key(session_id), self.redis.key(revoked_session_key(session_id))
        ttl = self.settings.access_token_ttl_s
        self.redis.call("session_revoke", lambda c: (c.set(revoked, "1", ex=ttl), c.delete(key)))

    def start_session(self, *, user_id: uuid.UUID, role: Role, user_agent: str = "") -> TokenPair:
        """Login: creates a session in Redis and issues both tokens."""
        session_id = secrets.token_urlsafe(16)
        jti = secrets.token_urlsafe(16)
        key = self._session_key(session_id)
        ttl = self.settings.refresh_token_ttl_s
        mapping = {"user_id": str(user_id), "role": role, "jti": jti, "created_at": str(time.time()), "ua": user_agent}
        try:
            self.redis.call("session_start", lambda c: (c.hset(key, mapping=mapping), c.expire(key, ttl)))
        except RedisDown as exc:
            raise ServiceUnavailable("Sessions are unavailable right now; try again shortly.") from exc
        return self._pair(user_id=user_id, role=role, session_id=session_id, jti=jti)

    def _pair(self, *, user_id: uuid.UUID, role: Role, session_id: str, jti: str) -> TokenPair:
        refresh = self._encode(
            {"sub": str(user_id), "sid": session_id, "jti": jti, "typ": "refresh"}, self.settings.refresh_token_ttl_s
        )
        return TokenPair(
            self.access_token(user_id=user_id, role=role, session_id=session_id),
            refresh,
            self.settings.access_token_ttl_s,
        )

    def refresh(self, refresh_token: str) -> TokenPair:
        """Rotates the refresh token of a live session; a revoked or reused token is refused."""
        claims = self._decode(refresh_token, "refresh")
        session_id, jti = str(claims.get("sid", "")), str(claims.get("jti", ""))
        key = self._session_key(session_id)
        try:
            session = self.redis.call("session_get", lambda c: c.hgetall(key))
        except RedisDown as exc:
            raise ServiceUnavailable("Sessions are unavailable right now; try again shortly.") from exc
        if not session or session.get("user_id") != claims["sub"]:
            raise Unauthorized("The refresh token has been revoked.")
        if session.get("jti") != jti:
            # An old refresh token came back: someone kept a copy. End the whole session.
            self._end_session(session_id)
            raise Unauthorized("The refresh token has been revoked.")
        new_jti = secrets.token_urlsafe(16)
        # Compare-and-set so two concurrent refreshes with the same token cannot both win.
        swapped = self.redis.call("session_rotate", lambda c: self._rotate(c, key, jti, new_jti))
        if not swapped:
            raise Unauthorized("The refresh token has been revoked.")
        return self._pair(
            user_id=uuid.UUID(session["user_id"]), role=session["role"], session_id=session_id, jti=new_jti
        )

    _ROTATE = """
    if redis.call('hget', KEYS[1], 'jti') == ARGV[1] then
      redis.call('hset', KEYS[1], 'jti', ARGV[2])
      return 1
    end
    return 0
    """

    def _rotate(self, client, key: str, old: str, new: str) -> bool:
        return bool(client.eval(self._ROTATE, 1, key, old, new))

    def revoke(self, refresh_token: str) -> None:
        """Logout: ends the session; its refresh token and its access tokens are refused from now on."""
        claims = self._decode(refresh_token, "refresh")
        try:
            self._end_session(str(claims.get("sid", "")))
        except RedisDown as exc:
            raise ServiceUnavailable("Sessions are unavailable right now; try again shortly.") from exc
