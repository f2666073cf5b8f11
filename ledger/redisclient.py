"""Synchronous redis-py clients for the sync worker and operator tools (not the hot path)."""

from __future__ import annotations

import redis
from redis.cluster import RedisCluster

SyncRedis = redis.Redis | RedisCluster


def is_cluster(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        return str(client.info("cluster").get("cluster_enabled", 0)) == "1"
    finally:
        client.close()


def connect_sync(url: str, cluster: bool | None = None) -> SyncRedis:
    """A decoding client; `cluster=None` asks the server whether it is a cluster node."""
    if cluster is None:
        cluster = is_cluster(url)
    if cluster:
        return RedisCluster.from_url(url, decode_responses=True, socket_timeout=30)
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=30)
