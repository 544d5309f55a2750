"""How many signups, link requests or logins one client may make per window (an hour unless told): a
fixed window per client (an IP, an admin name), in Redis when one is configured (shared by every web
process), else in this process."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from redis import exceptions as redis_errors

__all__ = ["ClientLimiter"]

WINDOW_SECONDS = 3600
log = logging.getLogger(__name__)


class ClientLimiter:
    def __init__(
        self,
        limit: int,
        *,
        redis_url: str | None,
        prefix: str,
        clock: Callable[[], float] = time.time,
        window: int = WINDOW_SECONDS,
    ) -> None:
        self.limit = limit
        self.window = window
        self.prefix = prefix
        self.clock = clock
        self._redis = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def allow(self, client: str, action: str) -> bool:
        """Count one request of ``client``; False once it made ``limit`` in this window."""
        if self.limit <= 0:
            return True
        return self._add(client, action, 1) <= self.limit

    def reached(self, client: str, action: str) -> bool:
        """True when ``client`` already made ``limit`` counted requests in this window (counts nothing:
        a login counts its failures only, with ``allow``, after checking this)."""
        return self.limit > 0 and self._add(client, action, 0) >= self.limit

    def _add(self, client: str, action: str, amount: int) -> int:
        window = int(self.clock()) // self.window
        if self._redis is not None:
            key = f"{self.prefix}:web:{action}:{client}:{window}"
            try:
                if not amount:
                    return int(self._redis.get(key) or 0)
                pipe = self._redis.pipeline()
                pipe.incrby(key, amount)
                pipe.expire(key, self.window)
                return int(pipe.execute()[0])
            except redis_errors.RedisError as exc:  # Redis away: this process counts alone meanwhile
                log.warning("rate limit: Redis did not answer (%s); counting in this process", exc)
        with self._lock:
            if len(self._counts) > 100_000:  # old windows go; a flood of addresses cannot grow this forever
                self._counts = {k: v for k, v in self._counts.items() if k[1] == window}
            local = (f"{action}:{client}", window)
            if amount:
                self._counts[local] = self._counts.get(local, 0) + amount
            return self._counts.get(local, 0)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
