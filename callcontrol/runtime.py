"""Where the Redis and SQL the process talks to come from, on embedded defaults or configured URLs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from callcontrol.config import Settings
from callcontrol.redis_server import EmbeddedRedis


@contextlib.contextmanager
def redis_url(settings: Settings) -> Iterator[str]:
    """Yield a Redis URL: the configured one, or an embedded server under data_dir.

    A second process (an operator's CLI beside a running demo) reuses the embedded server that is
    already listening on the data folder's socket instead of starting another on the same AOF.
    """
    if settings.redis_url:
        yield settings.redis_url
        return
    server = EmbeddedRedis(settings.data_dir / "redis")
    if server._ping():
        yield server.url
        return
    with server:
        yield server.url
