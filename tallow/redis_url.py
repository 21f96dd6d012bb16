"""REDIS_URL, parsed once at configuration time into the value the broker and the logs both use.

    redis://[[user]:password@]host[:port][/db][?query]
    rediss://...                                  the same over TLS
    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db][?query]
    rediss+sentinel://...                         the same, TLS to the sentinels and the primary
    redis+cluster://[[user]:password@]host[:port][,host[:port]...][?query]
    rediss+cluster://...                          the same over TLS (any node of a Redis Cluster)

A bad URL is a ValueError whose message says what is expected, so the configuration reports it
on one line naming REDIS_URL; nothing later has to parse the URL again.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlsplit

import attrs

SCHEMES = (
    "redis",
    "rediss",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)
REDIS_PORT = 6379
SENTINEL_PORT = 26379
MASK = "***"


@attrs.frozen
class RedisURL:
    """Where Redis is and how to authenticate. ``text`` is the URL exactly as configured."""

    text: str = attrs.field(repr=False)  # holds the password
    scheme: str
    username: str | None
    password: str | None = attrs.field(repr=False)
    hosts: tuple[tuple[str, int], ...]
    service: str | None  # the Sentinel service name (sentinel schemes only)
    db: int
    query: tuple[tuple[str, str], ...] = attrs.field(repr=False)  # may hold sentinel_password

    @property
    def sentinel(self) -> bool:
        return self.scheme.endswith("+sentinel")

    @property
    def cluster(self) -> bool:
        return self.scheme.endswith("+cluster")

    @property
    def tls(self) -> bool:
        return self.scheme.startswith("rediss")

    @property
    def options(self) -> dict[str, str]:
        """The query parameters (the last value of each), e.g. ssl_ca_certs, sentinel_password."""
        return dict(self.query)

    def masked(self) -> str:
        """The URL with every password (user info, query) replaced by ***, for logs and config."""
        auth = ""
        if self.username is not None or self.password is not None:
            user = quote(self.username or "", safe="")
            auth = f"{user}:{MASK}@" if self.password is not None else f"{user}@"
        hosts = ",".join(_host_text(host, port) for host, port in self.hosts)
        path = "/" + "/".join([self.service, str(self.db)] if self.service else [str(self.db)])
        path = "" if self.cluster else path  # a cluster has only db 0
        query = "&".join(
            f"{key}={MASK if 'password' in key else quote(value, safe='/.')}"
            for key, value in self.query
        )
        return f"{self.scheme}://{auth}{hosts}{path}" + (f"?{query}" if query else "")


def _host_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address(item: str, default_port: int) -> tuple[str, int]:
    host, port = None, None
    try:
        address = urlsplit("//" + item.strip())
        host, port = address.hostname, address.port
    except ValueError:
        host = None  # a port that is no number, or out of range
    if not host:
        raise ValueError(f"{item.strip()!r} is not a host[:port]")
    return host, port or default_port


def parse_redis_url(raw: str) -> RedisURL | None:
    """The parsed URL, or None for an empty value (the embedded broker)."""
    text = raw.strip()
    if not text:
        return None
    scheme, separator, rest = text.partition("://")
    if not separator or scheme.lower() not in SCHEMES:
        raise ValueError("must be a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL")
    scheme = scheme.lower()
    location, _, query = rest.partition("?")
    netloc, _, path = location.partition("/")
    userinfo, at, host_list = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinel, cluster = scheme.endswith("+sentinel"), scheme.endswith("+cluster")
    items = [item for item in host_list.split(",") if item.strip()] or ["localhost"]
    if len(items) > 1 and not (sentinel or cluster):
        raise ValueError("several hosts need a redis+sentinel:// or redis+cluster:// URL")
    hosts = tuple(_address(item, SENTINEL_PORT if sentinel else REDIS_PORT) for item in items)
    pieces = [unquote(piece) for piece in path.split("/") if piece]
    service = None
    if sentinel:
        if not pieces:
            raise ValueError(
                "a redis+sentinel:// URL names the service: "
                "redis+sentinel://host:26379[,host:26379...]/<service>[/db]"
            )
        service = pieces.pop(0)
    if cluster and pieces:
        raise ValueError("a redis+cluster:// URL has no path: a Redis Cluster has only db 0")
    if len(pieces) > 1 or (pieces and not pieces[0].isdigit()):
        raise ValueError(
            f"the path after the host{'s and service' if sentinel else ''} is a db number"
        )
    db = int(pieces[0]) if pieces else 0
    return RedisURL(
        text=text,
        scheme=scheme,
        username=username,
        password=password,
        hosts=hosts,
        service=service,
        db=db,
        query=tuple(parse_qsl(query, keep_blank_values=True)),
    )
