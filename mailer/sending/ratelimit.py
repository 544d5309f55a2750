"""One send rate for every worker process and machine: a token bucket in Redis, kept by one Lua script.

The script runs atomically on the Redis clock (``TIME``), so workers on different machines with skewed
clocks share one bucket. It *reserves* tokens: a caller whose token will only be ready in ``w`` seconds
gets ``w`` back and sleeps exactly that long, so workers queue behind each other instead of polling.
A reservation further ahead than ``max_wait`` is refused (the caller sleeps and asks again), which keeps a
paused or killed worker from holding a long line of tokens.

There is one bucket per transport (its name is in the Redis key), and its rate is the transport's own
(``Transport.max_rate()``: SES asks the account's MaxSendRate), so a worker whose default transport is
``file`` still holds a campaign sent through SES to the SES rate. Without Redis (embedded mode) an
in-process bucket with the same behaviour is used.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

from mailer.settings import Settings

__all__ = [
    "LocalRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "UnlimitedRateLimiter",
    "make_rate_limiter",
]

# KEYS[1] bucket; ARGV: rate (tokens/s), burst (bucket size), tokens wanted, max wait (microseconds).
# Returns {granted (1/0), wait in microseconds}: sleep the wait, then send (granted) or ask again.
_TOKEN_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000000)
  ts = now
end
local after = tokens - wanted
local wait = 0
if after < 0 then
  wait = math.ceil(-after * 1000000 / rate)
end
local ttl = math.ceil((burst + wanted) * 1000 / rate) + 60000
if wait > max_wait then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', string.format('%.0f', ts))
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {0, wait - max_wait}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(after), 'ts', string.format('%.0f', ts))
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, wait}
"""


class RateLimiter(Protocol):
    @property
    def rate(self) -> float | None:
        """Tokens per second; None: unlimited."""
        ...

    def acquire(self, tokens: int = 1) -> float:
        """Block until ``tokens`` may be spent; returns the seconds waited."""
        ...


class UnlimitedRateLimiter:
    rate: float | None = None

    def acquire(self, tokens: int = 1) -> float:
        return 0.0


class RedisRateLimiter:
    """The shared bucket. ``key`` names it; every process using the same key shares one rate."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        rate: float,
        burst: int,
        max_wait: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.client = client
        self.key = key
        self.rate = rate
        self.burst = burst
        self.max_wait_us = int(max_wait * 1_000_000)
        self._sleep = sleep
        self._script = client.register_script(_TOKEN_BUCKET)

    def try_acquire(self, tokens: int = 1) -> tuple[bool, float]:
        """One round trip: (granted, seconds to wait). Granted means: wait that long, then send."""
        granted, wait_us = self._script(
            keys=[self.key], args=[self.rate, self.burst, tokens, self.max_wait_us]
        )
        return bool(granted), int(wait_us) / 1_000_000

    def acquire(self, tokens: int = 1) -> float:
        waited = 0.0
        while True:
            granted, wait = self.try_acquire(tokens)
            if granted:
                if wait > 0:
                    self._sleep(wait)
                return waited + wait
            pause = min(wait, 0.5)
            self._sleep(pause)
            waited += pause

    def reset(self) -> None:
        self.client.delete(self.key)


class LocalRateLimiter:
    """The same bucket inside one process (embedded mode: no Redis, one sender)."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._ts = clock()
        self._lock = threading.Lock()

    def acquire(self, tokens: int = 1) -> float:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._ts) * self.rate)
            self._ts = now
            self._tokens -= tokens
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


def make_rate_limiter(settings: Settings, transport: str, rate: float | None) -> RateLimiter:
    """The limiter of ``transport`` at ``rate`` messages per second (None: unlimited): shared by every
    process through Redis when Redis is configured, else in-process."""
    if rate is None or rate <= 0:
        return UnlimitedRateLimiter()
    redis_url = settings.resolved_redis_url
    if redis_url:
        client = redis.Redis.from_url(redis_url)
        key = f"{settings.redis_prefix}:ratelimit:{transport}"
        return RedisRateLimiter(client, key, rate=rate, burst=settings.rate_burst)
    return LocalRateLimiter(rate=rate, burst=settings.rate_burst)
