"""REDIS_URL parsing: one value for the broker and for the logs, errors that say what to write."""

from __future__ import annotations

import pytest

from tallow.redis_url import parse_redis_url


def test_plain_url_with_defaults() -> None:
    url = parse_redis_url("redis://redis.internal")
    assert url is not None and not url.sentinel and not url.tls
    assert (url.hosts, url.db, url.username, url.password) == (
        (("redis.internal", 6379),),
        0,
        None,
        None,
    )
    assert url.masked() == "redis://redis.internal:6379/0"
    assert parse_redis_url("  ") is None


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:pw@host/1", "rediss://user:***@host:6379/1"),
        ("redis://user@[::1]:7000", "redis://user@[::1]:7000/0"),
        (
            "rediss+sentinel://app:p%40ss@h1,h2:26380/mymaster/2"
            "?sentinel_password=s3&ssl_ca_certs=/ca.pem",
            "rediss+sentinel://app:***@h1:26379,h2:26380/mymaster/2"
            "?sentinel_password=***&ssl_ca_certs=/ca.pem",
        ),
        ("rediss+cluster://:pw@n1:7000,n2/", "rediss+cluster://:***@n1:7000,n2:6379"),
    ],
)
def test_every_password_is_masked(raw: str, masked: str) -> None:
    url = parse_redis_url(raw)
    assert url is not None and url.masked() == masked
    assert "pw" not in repr(url) and "p@ss" not in repr(url)


def test_multi_host_sentinel_url_with_a_password() -> None:
    url = parse_redis_url("redis+sentinel://:pw@h1:26379,h2:26379/mymaster")
    assert url is not None and url.sentinel
    assert url.hosts == (("h1", 26379), ("h2", 26379))
    assert (url.service, url.db, url.password, url.username) == ("mymaster", 0, "pw", None)


def test_cluster_url_lists_any_nodes_of_the_cluster() -> None:
    url = parse_redis_url("redis+cluster://app:pw@10.0.0.1:7000,10.0.0.2:7001")
    assert url is not None and url.cluster and not url.sentinel and not url.tls
    assert url.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (url.username, url.password, url.db) == ("app", "pw", 0)
    assert url.masked() == "redis+cluster://app:***@10.0.0.1:7000,10.0.0.2:7001"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("http://redis", "must be a redis://"),
        ("redis+sentinel://:pw@h1:26379,h2:26379", "names the service"),
        ("redis+sentinel://h1/", "names the service"),
        ("redis://h1,h2/0", "several hosts"),
        ("redis://h1:port/0", "'h1:port' is not a host[:port]"),
        ("redis://h1/zero", "db number"),
        ("redis+sentinel://h1/svc/1/2", "db number"),
        ("redis+cluster://h1:7000/1", "has no path"),
    ],
)
def test_bad_urls_say_what_is_expected(raw: str, says: str) -> None:
    with pytest.raises(ValueError, match="^.*" + says.replace("[", r"\[").replace("]", r"\]")):
        parse_redis_url(raw)
