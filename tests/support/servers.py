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
    """A real Redis Cluster on free loopback ports: `masters` masters with `replicas` replicas each."""

    def __init__(self, masters: int = 3, replicas: int = 0) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="apc-cluster-"))
        self.replicas = replicas
        self.nodes = [EmbeddedRedis(self.tmp / f"n{i}", port=cluster_port(),
                                    extra_args=["--cluster-enabled", "yes",
                                                "--cluster-config-file", "nodes.conf",
                                                "--cluster-node-timeout", "2000"],
                                    supervise=not replicas)   # with replicas a dead master stays dead
                      for i in range(masters * (1 + replicas))]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", n.port) for n in self.nodes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    @property
    def cluster_url(self) -> str:
        """The `redis+cluster://` URL naming every node as a seed (what a controller is given)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def cli(self) -> str:
        cli = str(Path(find_redis_server()).with_name("redis-cli"))
        return cli if Path(cli).exists() else (shutil.which("redis-cli") or cli)

    def run_cli(self, port: int, *args: str) -> str:
        return subprocess.run([self.cli, "-p", str(port), *args], capture_output=True, text=True,
                              timeout=10).stdout

    def start(self) -> RedisCluster:
        for n in self.nodes:
            n.start()
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run([self.cli, "--cluster", "create", *addrs, "--cluster-replicas", str(self.replicas),
                        "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.healthy(self.nodes[0].port):
                return self
            time.sleep(0.1)
        raise TimeoutError("redis cluster did not reach cluster_state:ok")

    def healthy(self, port: int) -> bool:
        """cluster_state ok and, with replicas, every master's replica attached and in sync."""
        if "cluster_state:ok" not in self.run_cli(port, "cluster", "info"):
            return False
        if not self.replicas:
            return True
        return all("master_link_status:up" in self.run_cli(port, "info", "replication")
                   for port, role in self.roles().items() if role == "slave")

    def roles(self) -> dict[int, str]:
        """port -> "master" or "slave", as each live node says of itself."""
        out: dict[int, str] = {}
        for n in self.nodes:
            if n.proc is None or n.proc.poll() is not None:
                continue
            for line in self.run_cli(n.port, "info", "replication").splitlines():
                if line.startswith("role:"):
                    out[n.port] = line.split(":", 1)[1].strip()
        return out

    def replica_of(self, master_port: int) -> int:
        for port, role in self.roles().items():
            info = self.run_cli(port, "info", "replication")
            if role == "slave" and f"master_port:{master_port}" in info:
                return port
        raise LookupError(f"no replica of {master_port}")

    def failover(self, master_port: int, timeout: float = 20.0) -> int:
        """CLUSTER FAILOVER on the master's replica; returns the port of the promoted node once it serves
        and the old master has turned replica (it learns that a moment after the promotion)."""
        replica = self.replica_of(master_port)
        deadline = time.monotonic() + timeout
        asked = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() - asked > 5:     # a manual failover that found no majority times out
                self.run_cli(replica, "cluster", "failover")
                asked = time.monotonic()
            roles = self.roles()
            if roles.get(replica) == "master" and roles.get(master_port) != "master" and \
                    "cluster_state:ok" in self.run_cli(replica, "cluster", "info"):
                return replica
            time.sleep(0.1)
        raise TimeoutError(f"replica {replica} was not promoted")

    def kill_master(self, master_port: int, timeout: float = 30.0) -> int:
        """kill -9 a master and wait until its replica is promoted; returns the promoted node's port."""
        import signal

        replica = self.replica_of(master_port)
        node = next(n for n in self.nodes if n.port == master_port)
        assert node.proc is not None
        os.kill(node.proc.pid, signal.SIGKILL)
        node.proc.wait()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.roles().get(replica) == "master" and \
                    "cluster_state:ok" in self.run_cli(replica, "cluster", "info"):
                return replica
            time.sleep(0.1)
        raise TimeoutError(f"replica {replica} was not promoted")

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
