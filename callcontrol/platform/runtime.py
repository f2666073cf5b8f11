"""Where the Redis and SQL the process talks to come from, on embedded defaults or configured URLs."""

from __future__ import annotations

import contextlib
import gc
import resource
from collections.abc import Iterator

from callcontrol.platform.config import Settings
from callcontrol.platform.redis_server import EmbeddedRedis, private_dir


@contextlib.contextmanager
def redis_url(settings: Settings) -> Iterator[str]:
    """Yield a Redis URL: the configured one, or an embedded server under data_dir.

    A second process (an operator's CLI beside a running demo) reuses the embedded server that is
    already listening on the data folder's socket instead of starting another on the same AOF.
    """
    if settings.redis_url:
        yield settings.redis_url
        return
    server = EmbeddedRedis(private_dir(settings.data_dir) / "redis")
    if server._ping():
        yield server.url
        return
    with server:
        yield server.url


def raise_fd_limit() -> int:
    """Lift the soft descriptor limit to the hard one and return it.

    Every call in progress holds its FastAGI connection open (EXEC Dial runs inside the inmate's AGI
    session, so Asterisk's own hang-up or crash reaches us at once as EOF), so this limit, not memory,
    is what caps the calls one controller process carries. The hard limit is the operator's to set
    (systemd LimitNOFILE, Docker `ulimits`); a distribution's soft default of 1,024 would cap a
    controller at about a thousand calls.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def tune_gc(young: int = 10_000) -> None:
    """Once start-up is done: freeze what it loaded and collect the youngest generation less often.

    A call allocates thousands of short-lived objects (coroutines, futures, replies); at CPython's
    default of 700 the young collector runs several times per call. `gc.freeze()` moves the start-up
    heap (modules, the rating catalogue, tariffs) out of every later full collection. Measured with
    `python -m bench call_bench` (docs/performance.md): 5-8 % less controller CPU per call, p99
    authorization at 200/s 6-10 ms against 8-15 ms.
    """
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)
