"""What the code says exists: settings, routes, metric series, security headers."""

from __future__ import annotations

import re

from prometheus_client.metrics_core import Metric

from tallow.config import SETTINGS
from tallow.http.routes import ROUTES, STATIC_ROUTE
from tallow.observability.metrics import REGISTRY

SETTING_ENVS = frozenset(setting.env for setting in SETTINGS)
DEFAULTS = {setting.env: setting.default for setting in SETTINGS}

_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def _series(family: Metric) -> set[str]:
    return {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}


SERIES = frozenset(name for family in REGISTRY.collect() for name in _series(family))

# PromQL words that are not series names: functions, aggregations, keywords.
_PROMQL_WORDS = frozenset(
    (
        *("sum", "avg", "min", "max", "count", "rate", "irate", "increase"),
        *("histogram_quantile", "absent", "by", "without", "on", "ignoring"),
        *("unless", "and", "or", "group_left", "group_right", "le", "offset", "bool"),
    )
)
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{[^}]*\}")
_STRINGS = re.compile(r'"[^"]*"')
_DURATIONS = re.compile(r"\[[^\]]*\]")


def series_in(expr: str) -> set[str]:
    """The series names a PromQL expression reads (labels, strings and functions removed)."""
    text = _STRINGS.sub(" ", _MATCHERS.sub(" ", _DURATIONS.sub(" ", expr)))
    text = _LABEL_LISTS.sub(" ", text)
    return {word for word in _IDENTIFIER.findall(text) if word not in _PROMQL_WORDS}


def route_serves(path: str, role: str) -> bool:
    route = ROUTES.get(path)
    return route is not None and role in route.roles


def static_served_by(role: str) -> bool:
    return role in STATIC_ROUTE.roles
