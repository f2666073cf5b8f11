"""Real servers for tests and benchmarks: throwaway PostgreSQL and Redis Cluster on loopback."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from callcontrol.platform.redis_server import EmbeddedRedis, find_redis_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too; Redis refuses ports above 55535."""
    import random

    for _ in range(200):
        port = random.randint(20000, 45000)
        if _port_free(port) and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _pg_bindir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    if dirs:
        return Path(dirs[-1])
    raise FileNotFoundError("PostgreSQL server binaries not found: run scripts/bootstrap.sh --test-services")


class PostgresServer:
    """initdb + postgres on a free loopback port; as root it runs as the `postgres` (or `nobody`) user."""

    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.tmp = Path(tempfile.mkdtemp(prefix="apc-pg-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.run_as: str | None = None
        if os.getuid() == 0:
            for user in ("postgres", "nobody"):
                try:
                    pwd.getpwnam(user)
                    self.run_as = user
                    break
                except KeyError:
                    continue

    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", self.run_as, "--"] if self.run_as else []) + list(args)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        data = self.tmp / "data"
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
        subprocess.run(self._cmd(str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres",
                                 "--auth=trust", "-E", "UTF8", "--no-sync"),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.proc = subprocess.Popen(
            self._cmd(str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                      "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.tmp}",
                      "-c", "fsync=off", "-c", "max_connections=200", "-c", "synchronous_commit=off"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if ready.returncode == 0:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited during start-up")
            time.sleep(0.1)
        raise TimeoutError("postgres did not become ready")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


class RedisCluster:
    """A real 3-master Redis Cluster (no replicas) on free loopback ports."""

    def __init__(self, masters: int = 3) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="apc-cluster-"))
        self.nodes = [EmbeddedRedis(self.tmp / f"n{i}", port=cluster_port(),
                                    extra_args=["--cluster-enabled", "yes",
                                                "--cluster-config-file", "nodes.conf",
                                                "--cluster-node-timeout", "2000"])
                      for i in range(masters)]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", n.port) for n in self.nodes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> RedisCluster:
        for n in self.nodes:
            n.start()
        cli = str(Path(find_redis_server()).with_name("redis-cli"))
        if not Path(cli).exists():
            cli = shutil.which("redis-cli") or cli
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run([cli, "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = subprocess.run([cli, "-p", str(self.nodes[0].port), "cluster", "info"],
                                 capture_output=True, text=True).stdout
            if "cluster_state:ok" in out:
                return self
            time.sleep(0.1)
        raise TimeoutError("redis cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
