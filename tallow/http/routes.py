"""The route table: every path Tallow answers, its metric name, methods and serving roles.

This table is the single source of truth: the app dispatches from it and the deployment tests
check every probe and path that a manifest names against it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs

from tallow.http.ice import ice_servers_page
from tallow.http.messages import Request, Response
from tallow.http.metrics_endpoint import metrics_page
from tallow.http.probes import health, ready
from tallow.runtime import Runtime

Handler = Callable[[Runtime, Request], Awaitable[Response]]

ALL = frozenset({"all", "web", "signaling"})
WEB = frozenset({"all", "web"})
SIGNALING = frozenset({"all", "signaling"})
READ_METHODS = ("GET", "HEAD")


@attrs.frozen
class Route:
    path: str
    name: str  # the ``route`` label of HTTP metrics: never the raw path
    roles: frozenset[str]
    handler: Handler | None  # None: not plain HTTP (the WebSocket endpoint)
    methods: tuple[str, ...] = READ_METHODS


SIGNALING_PATH = "/signaling"

ROUTES: dict[str, Route] = {
    route.path: route
    for route in (
        Route("/api/health", "health", ALL, health),
        Route("/health", "health", SIGNALING, health),
        Route("/api/ready", "ready", ALL, ready),
        Route("/api/metrics", "metrics", ALL, metrics_page),
        Route("/api/ice-servers", "ice-servers", WEB, ice_servers_page),
        Route(SIGNALING_PATH, "signaling", SIGNALING, None, ("GET",)),
    )
}
STATIC_ROUTE = Route("/", "static", WEB, None)
"""Anything else under / is a UI file (role all and web)."""


def find(path: str, role: str) -> Route | None:
    """The route serving ``path`` in ``role``, or None for a 404."""
    route = ROUTES.get(path)
    if route is not None:
        return route if role in route.roles else None
    return STATIC_ROUTE if role in STATIC_ROUTE.roles else None
