"""The Redis channel layer, sized for many waiters and tolerant of Redis hiccups.

Two defects of the stock ``channels_redis`` set-up with redis-py 8 made waits fail:

- redis-py's default ``socket_timeout`` is 5 s, exactly the blocking pop
  (``BZPOPMIN``) channels-redis issues on every receive (``brpop_timeout`` 5 s):
  a receive that sees no message for 5 s races its own socket timeout and
  raises ``TimeoutError: Timeout reading from ...`` (websocket consumers died
  with it). Here the socket timeout is always longer than the blocking pop.
- redis-py's pool raises ``MaxConnectionsError`` at once when all its
  connections (100) are busy. Here a caller waits for a free connection
  (``BlockingConnectionPool``) for a bounded time.

Only wake-up calls travel through this layer (the database holds every exec's
state and output, see ``execution.notify``), so a receive that fails because
Redis is gone or paused is retried after a pause instead of ending the consumer:
consumers re-read the database on their own meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels_redis.core import RedisChannelLayer
from redis import asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

RECEIVE_RETRY_S = 1.0


class WakeupChannelLayer(RedisChannelLayer):
    def __init__(
        self,
        *args: Any,
        socket_timeout_s: float = 15.0,
        max_connections: int = 1000,
        pool_timeout_s: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # The socket timeout must outlast the blocking pop, or every idle receive fails.
        self.socket_timeout_s = max(socket_timeout_s, self.brpop_timeout + 5)
        self.max_connections = max_connections
        self.pool_timeout_s = pool_timeout_s

    def create_pool(self, index: int) -> aioredis.ConnectionPool:
        host = dict(self.hosts[index])
        address = host.pop("address", None)
        if address is None:  # pragma: no cover - only URL hosts are configured
            return super().create_pool(index)
        options: dict[str, Any] = {
            "max_connections": self.max_connections,
            "timeout": self.pool_timeout_s,
            "socket_timeout": self.socket_timeout_s,
            "socket_connect_timeout": min(self.socket_timeout_s, 5.0),
            **host,
        }
        pool: aioredis.ConnectionPool = aioredis.BlockingConnectionPool.from_url(address, **options)
        return pool

    async def group_members(self, group: str) -> int:
        """How many channels are in ``group`` (one command; lapsed members count too)."""
        connection = self.connection(self.consistent_hash(group))
        count: int = await connection.zcard(self._group_key(group))
        return count

    async def receive(self, channel: str) -> dict[str, Any]:
        while True:
            try:
                message: dict[str, Any] = await super().receive(channel)
                return message
            except (RedisError, OSError) as exc:
                logger.warning(
                    "channel layer receive failed, retrying in %ss: %r", RECEIVE_RETRY_S, exc
                )
                await asyncio.sleep(RECEIVE_RETRY_S)
