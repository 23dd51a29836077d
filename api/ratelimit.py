"""Token-bucket rate limits in Redis (the gateway concern Kong held in the seed design).

One bucket per user and one per client IP, each a small Redis hash updated atomically by a
Lua script (one key per call, so it runs unchanged on Redis Cluster). A bucket holds
``capacity`` tokens and refills at ``capacity / 60`` tokens a second; a request takes one.
When Redis is down the limiter fails open (logged, metric): availability over strictness.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from api.cache import RedisDown, RedisGateway
from api.metrics import Metrics

# KEYS[1] bucket; ARGV: capacity, refill tokens per second, now (seconds, float), cost.
# Returns {allowed 0/1, tokens left (floor), seconds until one token (ceil, >= 1 when refused)}.
_TAKE = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
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
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
return {allowed, math.floor(tokens), wait}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    retry_after_s: int
    scope: str
    limit: int


class RateLimiter:
    def __init__(self, redis: RedisGateway, metrics: Metrics, *, per_user: int, per_ip: int) -> None:
        self.redis = redis
        self.metrics = metrics
        self.per_user = per_user
        self.per_ip = per_ip
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
