"""Turn REDIS_URL into a coredis client: plain Redis, TLS, or a primary found through Sentinel.

    redis://[[user]:password@]host[:port][/db]
    rediss://[[user]:password@]host[:port][/db][?ssl_ca_certs=/ca.pem&ssl_certfile=..&ssl_keyfile=..]
    redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db][?query]
    rediss+sentinel://...   the same, with TLS to the sentinels and to the primary

The user and password authenticate to the Redis data node (a password alone uses the ``default``
user; ``user:password`` an ACL user). For Sentinel, ``sentinel_username`` and
``sentinel_password`` in the query authenticate to the sentinels themselves, when they require it.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import coredis
from coredis.connection import TCPLocation
from coredis.retry import NoRetryPolicy

SENTINEL_PORT = 26379


def _tls_context(query: dict[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=query.get("ssl_ca_certs"))
    if query.get("ssl_certfile"):
        context.load_cert_chain(query["ssl_certfile"], query.get("ssl_keyfile"))
    if query.get("ssl_check_hostname", "true").lower() in ("false", "0", "no"):
        context.check_hostname = False
    return context


def _sentinel_hosts(netloc: str) -> list[TCPLocation]:
    hosts = []
    for item in netloc.rpartition("@")[2].split(","):
        address = urlsplit("//" + item.strip())
        hosts.append(TCPLocation(address.hostname or "localhost", address.port or SENTINEL_PORT))
    return hosts


@asynccontextmanager
async def open_client(url: str, *, op_timeout: float) -> AsyncIterator[coredis.Redis[bytes]]:
    """A connected-on-demand client for ``url``; commands fail fast instead of retrying."""
    options: dict[str, Any] = {
        "connect_timeout": op_timeout,
        "stream_timeout": op_timeout,
        "retry_policy": NoRetryPolicy(),
    }
    parts = urlsplit(url)
    if not parts.scheme.endswith("+sentinel"):
        async with coredis.Redis.from_url(url, **options) as client:
            yield client
        return
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    path = [unquote(piece) for piece in parts.path.split("/") if piece]
    if not path:
        raise ValueError("a redis+sentinel:// URL names the service: .../<service>[/db]")
    tls = _tls_context(query) if parts.scheme.startswith("rediss") else None
    sentinel_kwargs: dict[str, Any] = {"connect_timeout": op_timeout, "stream_timeout": op_timeout}
    if query.get("sentinel_password"):
        sentinel_kwargs["password"] = query["sentinel_password"]
        sentinel_kwargs["username"] = query.get("sentinel_username")
    if tls is not None:
        sentinel_kwargs["ssl_context"] = tls
    node_kwargs: dict[str, Any] = {
        "connect_timeout": op_timeout,
        "stream_timeout": op_timeout,
        "db": int(path[1]) if len(path) > 1 else 0,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
    }
    if tls is not None:
        node_kwargs["ssl_context"] = tls
    sentinel = coredis.Sentinel(
        _sentinel_hosts(parts.netloc), sentinel_kwargs=sentinel_kwargs, **node_kwargs
    )
    async with sentinel, sentinel.primary_for(path[0]) as client:
        yield client
