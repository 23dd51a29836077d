"""Per-account login throttling: a password guesser spread over many IPs still hits one account.

After ``api.login_max_failures`` wrong passwords for one email within ``api.login_failure_window_s``
(a fixed window from the first wrong one), every login of that account answers 429 with
``Retry-After`` until the window ends, even with the right password (otherwise the 429 itself
would tell the guesser when it is right). A successful login resets the count. The counter is a
Redis key per account (a digest of the lower-cased email, never the address itself); the per-IP
token bucket of the request edge (``api.ratelimit``) is separate. Redis down: fail open, as the
rate limits do (logins need Redis for their session anyway).
"""

from __future__ import annotations

import hashlib

from api.cache import RedisDown, RedisGateway
from api.errors import TooManyRequests
from core.keys import login_failures_key
from core.settings import APISettings


class LoginThrottle:
    def __init__(self, settings: APISettings, redis: RedisGateway) -> None:
        self.max_failures = settings.login_max_failures
        self.window_s = settings.login_failure_window_s
        self.redis = redis

    def _key(self, email: str) -> str:
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        return self.redis.key(login_failures_key(digest))

    def check(self, email: str) -> None:
        """Raises 429 (with ``Retry-After``) while the account has too many recent wrong passwords."""
        key = self._key(email)
        try:
            failures, ttl = self.redis.call("login_throttle", lambda c: (c.get(key), c.ttl(key)))
        except RedisDown:
            return
        if failures is not None and int(failures) >= self.max_failures:
            wait = max(1, int(ttl)) if ttl and int(ttl) > 0 else self.window_s
            raise TooManyRequests(
                f"Too many wrong passwords for this account; try again in {wait} s.", retry_after_s=wait
            )

    def failed(self, email: str) -> None:
        key = self._key(email)
        window = self.window_s
        try:
            self.redis.call("login_failed", lambda c: (c.incr(key), c.expire(key, window, nx=True)))
        except RedisDown:
            return

    def succeeded(self, email: str) -> None:
        key = self._key(email)
        try:
            self.redis.call("login_reset", lambda c: c.delete(key))
        except RedisDown:
            return
