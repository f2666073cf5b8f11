"""Synchronous redis-py clients for the sync worker and operator tools (not the hot path)."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

import redis
from redis.cluster import ClusterNode, RedisCluster

SyncRedis = redis.Redis | RedisCluster
CLUSTER_SCHEME = "redis+cluster"     # redis+cluster://[user:password@]host:port[,host:port...]


def cluster_seeds(url: str) -> list[tuple[str, int]] | None:
    """The seed nodes of a `redis+cluster://` URL, or None for any other URL."""
    parsed = urlparse(url)
    if parsed.scheme != CLUSTER_SCHEME:
        return None
    seeds = []
    for part in parsed.netloc.rpartition("@")[2].split(","):
        host, sep, port = part.strip().rpartition(":")
        if not part.strip():
            continue
        seeds.append((host, int(port)) if sep else (part.strip(), 6379))
    if not seeds:
        raise ValueError(f"{CLUSTER_SCHEME}:// URL names no seed node")
    if parsed.path.strip("/") not in ("", "0"):
        raise ValueError("Redis Cluster has only database 0")
    return seeds


def credentials(url: str) -> tuple[str, str]:
    """(username, password) of a Redis URL; a lone user part is the password, as redis-py reads it."""
    parsed = urlparse(url)
    if parsed.password:
        return unquote(parsed.username or ""), unquote(parsed.password)
    return "", unquote(parsed.username or "")


def is_cluster(url: str) -> bool:
    if cluster_seeds(url) is not None:
        return True
    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        return str(client.info("cluster").get("cluster_enabled", 0)) == "1"
    finally:
        client.close()


def connect_sync(url: str, cluster: bool | None = None) -> SyncRedis:
    """A decoding client; `cluster=None` asks the server whether it is a cluster node."""
    if cluster is None:
        cluster = is_cluster(url)
    seeds = cluster_seeds(url)
    if seeds is not None:
        user, password = credentials(url)
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in seeds],  # type: ignore[no-untyped-call]
                            username=user or None,
                            password=password or None, decode_responses=True, socket_timeout=30)
    if cluster:
        return RedisCluster.from_url(url, decode_responses=True, socket_timeout=30)
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=30)
