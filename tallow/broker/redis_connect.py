"""Turn REDIS_URL (parsed by tallow.redis_url) into a coredis client: plain Redis, TLS, a
primary found through Sentinel, or a Redis Cluster.

    redis://[[user]:password@]host[:port][/db]
    rediss://[[user]:password@]host[:port][/db][?ssl_ca_certs=/ca.pem&ssl_certfile=..&ssl_keyfile=..]
    redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db][?query]
    rediss+sentinel://...   the same, with TLS to the sentinels and to the primary
    redis+cluster://[[user]:password@]host:port[,host:port...][?query]
    rediss+cluster://...    the same, with TLS to every node (ssl_* query as for rediss)

The user and password authenticate to the Redis data node (a password alone uses the ``default``
user; ``user:password`` an ACL user). For Sentinel, ``sentinel_username`` and
``sentinel_password`` in the query authenticate to the sentinels themselves, when they require it.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import coredis
from coredis.connection import TCPLocation
from coredis.retry import NoRetryPolicy

from tallow.broker.base import BrokerUnavailable
from tallow.broker.redis_link import Endpoint
from tallow.redis_url import RedisURL


def _tls_context(query: dict[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=query.get("ssl_ca_certs"))
    if query.get("ssl_certfile"):
        context.load_cert_chain(query["ssl_certfile"], query.get("ssl_keyfile"))
    if query.get("ssl_check_hostname", "true").lower() in ("false", "0", "no"):
        context.check_hostname = False
    return context


Client = coredis.Redis[bytes] | coredis.RedisCluster[bytes]


@asynccontextmanager
async def open_client(url: RedisURL, *, op_timeout: float) -> AsyncIterator[Client]:
    """A connected-on-demand client for ``url``; commands fail fast instead of retrying."""
    options: dict[str, Any] = {
        "connect_timeout": op_timeout,
        "stream_timeout": op_timeout,
        "retry_policy": NoRetryPolicy(),
    }
    if url.cluster:
        async with _cluster(url, options) as cluster:
            yield cluster
        return
    if not url.sentinel:
        async with coredis.Redis.from_url(url.text, **options) as client:
            yield client
        return
    assert url.service is not None  # parse_redis_url requires it for Sentinel
    sentinel = _sentinel(url, op_timeout)
    async with sentinel, sentinel.primary_for(url.service) as client:
        yield client


def _sentinel(url: RedisURL, op_timeout: float) -> coredis.Sentinel[bytes]:
    query = url.options
    tls = _tls_context(query) if url.tls else None
    sentinel_kwargs: dict[str, Any] = {"connect_timeout": op_timeout, "stream_timeout": op_timeout}
    if query.get("sentinel_password"):
        sentinel_kwargs["password"] = query["sentinel_password"]
        sentinel_kwargs["username"] = query.get("sentinel_username")
    if tls is not None:
        sentinel_kwargs["ssl_context"] = tls
    node_kwargs: dict[str, Any] = {
        "connect_timeout": op_timeout,
        "stream_timeout": op_timeout,
        "db": url.db,
        "username": url.username,
        "password": url.password,
    }
    if tls is not None:
        node_kwargs["ssl_context"] = tls
    hosts = [TCPLocation(host, port) for host, port in url.hosts]
    return coredis.Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, **node_kwargs)


async def node_for(url: RedisURL, client: Client, key: str, op_timeout: float) -> Endpoint:
    """The node that holds ``key`` (or its channel): the one Redis, the primary Sentinel names
    now, or in a cluster the primary serving the key's slot as some node sees it (a stale
    answer fails the broker's subscription check or the script calls, and it asks again)."""
    host, port = url.hosts[0]
    if isinstance(client, coredis.RedisCluster):
        # Asked of a random node; one that is down comes back as its error, not raised.
        slot, slots = await client.cluster_keyslot(key), await client.cluster_slots()
        answers: tuple[object, ...] = (slot, slots)  # whatever the annotations say
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        for (first, last), nodes in slots.items():
            if first <= slot <= last:
                host, port = nodes[0]["host"], nodes[0]["port"]
                break
        else:
            raise BrokerUnavailable(f"no node serves slot {slot}")
    elif url.sentinel:
        assert url.service is not None
        async with _sentinel(url, op_timeout) as sentinel:
            host, port = await sentinel.discover_primary(url.service)
    tls = _tls_context(url.options) if url.tls else None
    return Endpoint(host, port, tls, url.username, url.password, url.db)


def _cluster(url: RedisURL, options: dict[str, Any]) -> coredis.RedisCluster[bytes]:
    """Any reachable node of ``url`` tells the client the others and which slots they serve."""
    return coredis.RedisCluster(
        startup_nodes=[TCPLocation(host, port) for host, port in url.hosts],
        username=url.username,
        password=url.password,
        ssl_context=_tls_context(url.options) if url.tls else None,
        # Tallow's keys live on one slot: a node that is down elsewhere must not stop a reload.
        skip_full_coverage_check=True,
        reinitialize_steps=1,  # every failure the broker reports reloads the slot map
        **options,
    )
