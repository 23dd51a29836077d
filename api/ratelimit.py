"""Token-bucket rate limits in Redis (the gateway concern Kong held in the seed design).

One bucket per user and one per client IP, each a small Redis hash updated atomically by a
Lua script (one key per call, so it runs unchanged on Redis Cluster). A bucket holds
``capacity`` tokens and refills at ``capacity / 60`` tokens a second; a request takes one.
When Redis is down the limiter fails open (logged, metric): availability over strictness.

``acheck_edge`` is the request edge's one Redis round trip: both buckets and the session
denylist check (``api.auth``) in one Lua script on a single server (on a cluster, where the
keys live in different slots, one call per key). The user bucket is only taken when the IP
bucket allowed the request, as in ``check``. For a GET whose route reads known cache entries
(a course read: the course and the caller's membership) the same script also reads those
entries, so a cached authenticated read is ONE Redis round trip in all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from api.cache import RedisDown, RedisGateway, set_prefetched
from api.metrics import Metrics
from core.keys import revoked_session_key

# One bucket: KEYS[1] bucket; ARGV: capacity, refill tokens per second, now (seconds, float), cost.
# Returns {allowed 0/1, tokens left (floor), seconds until one token (ceil, >= 1 when refused)}.
_TAKE_BODY = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = capacity; ts = now end
if now > ts then tokens = math.min(capacity, tokens + (now - ts) * rate); ts = now end
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = math.ceil((cost - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('EXPIRE', key, math.ceil(capacity / rate) + 60)
return {allowed, math.floor(tokens), wait}
"""
_TAKE_FUNCTION = "local function take(key, capacity, rate, now, cost)" + _TAKE_BODY.replace("KEYS[1]", "key") + "end\n"
_TAKE = (
    _TAKE_FUNCTION
    + "return take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))\n"
)
# The edge: KEYS = ip bucket, [user bucket], [revoked-session key], read keys...; ARGV = now,
# buckets (1|2), ip capacity, ip rate, user capacity, user rate, check the session (0|1), reads.
# Returns {ip allowed, remaining, wait, user allowed (-1: not taken), remaining, wait, revoked,
# [values of the read keys, only when every bucket allowed]}.
_EDGE = (
    _TAKE_FUNCTION
    + """
local now = tonumber(ARGV[1])
local buckets = tonumber(ARGV[2])
local out = take(KEYS[1], tonumber(ARGV[3]), tonumber(ARGV[4]), now, 1)
if buckets == 2 and out[1] == 1 then
  local user = take(KEYS[2], tonumber(ARGV[5]), tonumber(ARGV[6]), now, 1)
  out[4] = user[1]; out[5] = user[2]; out[6] = user[3]
else
  out[4] = -1; out[5] = 0; out[6] = 0
end
out[7] = 0
local first_read = buckets + 1
if ARGV[7] == '1' then out[7] = redis.call('EXISTS', KEYS[buckets + 1]); first_read = buckets + 2 end
local reads = tonumber(ARGV[8] or '0')
if reads > 0 and out[1] == 1 and out[4] ~= 0 then
  out[8] = redis.call('MGET', unpack(KEYS, first_read, first_read + reads - 1))
end
return out
"""
)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    retry_after_s: int
    scope: str
    limit: int


class RateLimiter:
    def __init__(
        self,
        redis: RedisGateway,
        metrics: Metrics,
        *,
        per_user: int,
        per_ip: int,
        edge_reads: Callable[[str, str], list[str]] | None = None,
    ) -> None:
        self.redis = redis
        self.metrics = metrics
        self.per_user = per_user
        self.per_ip = per_ip
        # (GET path, user id) -> cache entries the route will read: fetched in the edge's round
        # trip and handed to the route through ``api.cache.prefetched`` (single server only).
        self.edge_reads = edge_reads
        self._take = redis.client.register_script(_TAKE)

    def _bucket(self, scope: str, ident: str, capacity: int) -> Decision | None:
        key = self.redis.key(f"ratelimit:{scope}:{ident}")
        now = time.time()
        try:
            allowed, remaining, wait = self.redis.call(
                "rate_limit", lambda _c: self._take(keys=[key], args=[capacity, capacity / 60.0, now, 1])
            )
        except RedisDown:
            return None  # fail open
        return Decision(bool(allowed), int(remaining), max(1, math.ceil(wait)) if not allowed else 0, scope, capacity)

    def check(self, *, ip: str, user_id: str | None) -> Decision | None:
        """The first refusing bucket, or the tightest allowing one (for headers); None if Redis is down."""
        decisions = []
        for scope, ident, capacity in (("ip", ip, self.per_ip), ("user", user_id, self.per_user)):
            if ident is None:
                continue
            decision = self._bucket(scope, ident, capacity)
            if decision is None:
                continue
            if not decision.allowed:
                self.metrics.rate_limited.labels(scope).inc()
                return decision
            decisions.append(decision)
        return min(decisions, key=lambda d: d.remaining) if decisions else None

    async def acheck_edge(
        self, *, ip: str, user_id: str | None, session_id: str | None, path: str | None = None
    ) -> tuple[Decision | None, bool | None]:
        """(``check``'s decision, whether the session is revoked) in one round trip, on the event
        loop. Redis down: (None, None), both fail open.

        ``path`` (a GET's): the cache entries its route will read (``edge_reads``) come back in
        the same script, for the route to use instead of a second round trip."""
        revoked_key = self.redis.key(revoked_session_key(session_id)) if session_id else None
        if self.redis.settings.cluster:
            return await self._acheck_edge_per_key(ip=ip, user_id=user_id, revoked_key=revoked_key)
        keys = [self.redis.key(f"ratelimit:ip:{ip}")]
        if user_id is not None:
            keys.append(self.redis.key(f"ratelimit:user:{user_id}"))
        if revoked_key is not None:
            keys.append(revoked_key)
        reads = []
        if path is not None and user_id is not None and self.edge_reads is not None:
            reads = [self.redis.key(name) for name in self.edge_reads(path, user_id)]
            keys.extend(reads)
        args = [
            time.time(),
            2 if user_id is not None else 1,
            self.per_ip,
            self.per_ip / 60.0,
            self.per_user,
            self.per_user / 60.0,
            1 if revoked_key is not None else 0,
            len(reads),
        ]
        try:
            out = await self.redis.aeval("edge", _EDGE, keys, args)
        except RedisDown:
            return None, None
        if reads and len(out) > 7:
            set_prefetched(dict(zip(reads, out[7], strict=True)))
        results = [("ip", self.per_ip, out[0:3])]
        if out[3] != -1:
            results.append(("user", self.per_user, out[3:6]))
        return self._decide(results), bool(out[6]) if revoked_key is not None else None

    async def _acheck_edge_per_key(
        self, *, ip: str, user_id: str | None, revoked_key: str | None
    ) -> tuple[Decision | None, bool | None]:
        results = []
        try:
            for scope, ident, capacity in (("ip", ip, self.per_ip), ("user", user_id, self.per_user)):
                if ident is None:
                    continue
                key = self.redis.key(f"ratelimit:{scope}:{ident}")
                out = await self.redis.aeval("rate_limit", _TAKE, [key], [capacity, capacity / 60.0, time.time(), 1])
                results.append((scope, capacity, out))
                if not out[0]:
                    break
            revoked = None
            if revoked_key is not None:
                revoked = bool(await self.redis.acall("session_revoked", lambda c: c.exists(revoked_key)))
        except RedisDown:
            return None, None
        return self._decide(results), revoked

    def _decide(self, results: list[tuple[str, int, list[int]]]) -> Decision | None:
        decisions = []
        for scope, capacity, (allowed, remaining, wait) in results:
            decision = Decision(
                bool(allowed), int(remaining), max(1, math.ceil(wait)) if not allowed else 0, scope, capacity
            )
            if not decision.allowed:
                self.metrics.rate_limited.labels(scope).inc()
                return decision
            decisions.append(decision)
        return min(decisions, key=lambda d: d.remaining) if decisions else None
