"""Configuration: one schema, read from the environment (12-factor) and overridden by CLI flags.

Every setting is declared once, as a field of ``Settings`` (``setting(...)``); ``SETTINGS`` is
read from those fields. The CLI builds its flags from it, ``tallow config`` prints it,
docs/configuration.md documents it and the deployment tests check artifacts against it, so a
new knob only ever needs one new field here.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from tallow.redis_url import RedisURL, parse_redis_url

ROLES = ("all", "web", "signaling")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
PQC_BACKENDS = ("cryptography", "liboqs")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A setting has a bad value. The message names the variable and says what is expected."""


# --- value parsers: each takes the raw string and returns the value or raises ValueError ---------


def _text(raw: str) -> str:
    return raw.strip()


def _optional_text(raw: str) -> str | None:
    return raw.strip() or None


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _bounded(
    kind: Callable[[str], Any], what: str, low: float, high: float
) -> Callable[[str], Any]:
    """A parser for a number of ``kind`` (int or float) from ``low`` to ``high``."""
    expected = f"must be {what} from {low:.10g} to {high:.10g}"

    def parse(raw: str) -> Any:
        try:
            value = kind(raw.strip())
        except ValueError:
            raise ValueError(expected) from None
        if not low <= value <= high:
            raise ValueError(expected)
        return value

    return parse


def _integer(low: int, high: int) -> Callable[[str], int]:
    return _bounded(int, "a whole number", low, high)


def _seconds(low: float, high: float) -> Callable[[str], float]:
    return _bounded(float, "a number of seconds", low, high)


def _rate(low: float, high: float) -> Callable[[str], float]:
    return _bounded(float, "a number per second", low, high)


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _origins(raw: str) -> tuple[str, ...]:
    origins = _list(raw)
    for origin in origins:
        parts = urlsplit(origin)
        if origin != "*" and (parts.scheme not in ("http", "https") or not parts.netloc):
            raise ValueError(f"{origin!r} is not an origin like https://tallow.example.com")
    return tuple(origin.rstrip("/").lower() for origin in origins)


def _ice_urls(scheme_prefixes: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(raw: str) -> tuple[str, ...]:
        urls = _list(raw)
        for url in urls:
            if not url.startswith(scheme_prefixes):
                raise ValueError(f"{url!r} must start with {' or '.join(scheme_prefixes)}")
        return urls

    return parse


def _networks(raw: str) -> tuple[Network, ...]:
    networks = []
    for item in _list(raw):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return tuple(networks)


# --- the schema ---------------------------------------------------------------------------------


@attrs.frozen
class Setting:
    """One configuration knob: its environment variable, CLI flag, default and parser."""

    name: str
    env: str
    default: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def setting(
    env: str, default: str, parse: Callable[[str], Any], help: str, *, secret: bool = False
) -> Any:
    """A field of Settings that is also a knob: the field's name becomes the Setting's name."""
    spec = {"env": env, "default": default, "parse": parse, "help": help, "secret": secret}
    return attrs.field(metadata={_SPEC: spec})


_SPEC = "tallow.setting"


@attrs.frozen(kw_only=True)
class Settings:
    """The effective configuration of one process (parsed, validated, immutable).

    Each field declares its knob once (``setting(...)``); SETTINGS is read from these fields.
    """

    host: str = setting("TALLOW_HOST", "0.0.0.0", _text, "Address to listen on.")
    port: int = setting("TALLOW_PORT", "3000", _integer(0, 65535), "TCP port to listen on.")
    role: str = setting(
        "TALLOW_ROLE",
        "all",
        _choice(*ROLES),
        "What this process serves: all, web (HTTP and UI) or signaling (WebSocket).",
    )
    node_id: str | None = setting(
        "TALLOW_NODE_ID",
        "",
        _optional_text,
        "Name of this replica in logs, probes and the broker (default: the host name).",
    )
    # setting() makes an attrs field, not a shared default value.
    redis_url: RedisURL | None = setting(  # noqa: RUF009
        "REDIS_URL",
        "",
        parse_redis_url,
        "Redis for fan-out across replicas; unset runs the embedded in-memory broker.",
        secret=True,
    )
    redis_prefix: str = setting(
        "REDIS_PREFIX",
        "tallow",
        _text,
        "Prefix of every Redis key and channel, so several deployments can share one Redis.",
    )
    allowed_origins: tuple[str, ...] = setting(
        "ALLOWED_ORIGINS",
        "",
        _origins,
        "Comma list of browser origins allowed to open /signaling; unset: same origin only.",
    )
    stun_urls: tuple[str, ...] = setting(
        "STUN_URLS",
        "",
        _ice_urls(("stun:", "stuns:")),
        "Comma list of STUN URLs handed to browsers.",
    )
    turn_urls: tuple[str, ...] = setting(
        "TURN_URLS",
        "",
        _ice_urls(("turn:", "turns:")),
        "Comma list of TURN URLs handed to browsers.",
    )
    turn_secret: str | None = setting(
        "TURN_SECRET",
        "",
        _optional_text,
        "coturn static-auth-secret: browsers get short-lived TURN REST credentials.",
        secret=True,
    )
    turn_ttl: int = setting(
        "TURN_TTL",
        "3600",
        _integer(60, 7 * 86400),
        "Lifetime in seconds of TURN REST credentials.",
    )
    turn_username: str | None = setting(
        "TURN_USERNAME",
        "",
        _optional_text,
        "Static TURN user name (used when TURN_SECRET is unset).",
    )
    turn_credential: str | None = setting(
        "TURN_CREDENTIAL",
        "",
        _optional_text,
        "Static TURN password (used when TURN_SECRET is unset).",
        secret=True,
    )
    metrics_token: str | None = setting(
        "METRICS_TOKEN",
        "",
        _optional_text,
        "Bearer token required by /api/metrics; unset leaves it open.",
        secret=True,
    )
    log_level: str = setting(
        "LOG_LEVEL",
        "info",
        _choice(*LOG_LEVELS),
        "Least severe level logged.",
    )
    log_format: str = setting(
        "LOG_FORMAT",
        "auto",
        _choice(*LOG_FORMATS),
        "json, console, or auto (console on a terminal, else json).",
    )
    drain_seconds: float = setting(
        "TALLOW_DRAIN_SECONDS",
        "10",
        _seconds(0, 3600),
        "On SIGTERM, how long in-flight HTTP may take before the process exits.",
    )
    max_message_bytes: int = setting(
        "TALLOW_MAX_MESSAGE_BYTES",
        "65536",
        _integer(1024, 16 << 20),
        "Largest signaling message accepted; larger ones get error too-large.",
    )
    max_room_peers: int = setting(
        "TALLOW_MAX_ROOM_PEERS",
        "50",
        _integer(2, 10000),
        "Most peers in one room; one more gets error room-full.",
    )
    resume_seconds: float = setting(
        "TALLOW_RESUME_SECONDS",
        "30",
        _seconds(0, 3600),
        "Grace period in which a dropped client may resume its peer id and room.",
    )
    resume_queue: int = setting(
        "TALLOW_RESUME_QUEUE",
        "256",
        _integer(0, 100000),
        "Most messages queued for a peer while it is away; beyond, senders get queue-full.",
    )
    header_timeout: float = setting(
        "TALLOW_HEADER_TIMEOUT",
        "10",
        _seconds(0.5, 600),
        "Seconds a new connection has to send its first request head (slow clients are cut).",
    )
    heartbeat_seconds: float = setting(
        "TALLOW_HEARTBEAT_SECONDS",
        "20",
        _seconds(1, 600),
        "WebSocket ping interval; a connection silent for 3 intervals is dropped.",
    )
    send_queue: int = setting(
        "TALLOW_SEND_QUEUE",
        "1024",
        _integer(16, 1000000),
        "Messages buffered for one slow connection before it is cut off (close 1013).",
    )
    trusted_proxies: tuple[Network, ...] = setting(
        "TALLOW_TRUSTED_PROXIES",
        "",
        _networks,
        "Comma list of proxy addresses/CIDRs allowed to set X-Forwarded-For/-Proto.",
    )
    rate_limit: float = setting(
        "TALLOW_RATE_LIMIT",
        "50",
        _rate(0, 1000000),
        "Signaling messages per second per connection (token bucket refill); 0 disables.",
    )
    rate_burst: int = setting(
        "TALLOW_RATE_BURST",
        "200",
        _integer(1, 1000000),
        "Token bucket size: messages a connection may send at once.",
    )
    abuse_strikes: int = setting(
        "TALLOW_ABUSE_STRIKES",
        "20",
        _integer(1, 100000),
        "Consecutive refused messages (rate-limited, too-large) before the server closes.",
    )
    max_connections_per_ip: int = setting(
        "TALLOW_MAX_CONNECTIONS_PER_IP",
        "64",
        _integer(0, 1000000),
        "Open WebSocket connections per client address; 0 disables.",
    )
    pqc_backend: str = setting(
        "TALLOW_PQC_BACKEND",
        "cryptography",
        _choice(*PQC_BACKENDS),
        "Post-quantum library for the readiness self-test: cryptography or liboqs.",
    )
    static_dir: str | None = setting(
        "TALLOW_STATIC_DIR",
        "",
        _optional_text,
        "Serve the web UI from this folder instead of the packaged one.",
    )

    @property
    def node(self) -> str:
        return self.node_id or socket.gethostname()

    @property
    def serves_http(self) -> bool:
        return self.role in ("all", "web")

    @property
    def serves_signaling(self) -> bool:
        return self.role in ("all", "signaling")


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(name=field.name, **field.metadata[_SPEC]) for field in attrs.fields(Settings)
)
SETTINGS_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}


def load(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, str | None] | None = None
) -> Settings:
    """Build Settings from the environment, with CLI overrides (by setting name) taking precedence.

    Raises ConfigError naming the variable (and flag) whose value is wrong.
    """
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        from_flag = overrides.get(setting.name)
        raw = from_flag if from_flag is not None else environ.get(setting.env, setting.default)
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as error:
            where = f"{setting.flag} / {setting.env}" if from_flag is not None else setting.env
            shown = "(hidden)" if setting.secret else repr(raw)
            raise ConfigError(f"{where}: {error} (got {shown})") from None
    settings = Settings(**values)
    _check_consistency(settings)
    return settings


def _check_consistency(settings: Settings) -> None:
    if settings.turn_urls and not (
        settings.turn_secret or (settings.turn_username and settings.turn_credential)
    ):
        raise ConfigError(
            "TURN_URLS: set TURN_SECRET (coturn static-auth-secret) or both TURN_USERNAME and "
            "TURN_CREDENTIAL, or browsers cannot authenticate to the TURN server"
        )
    if bool(settings.turn_username) != bool(settings.turn_credential):
        raise ConfigError("TURN_USERNAME and TURN_CREDENTIAL must be set together")


def describe(settings: Settings) -> dict[str, Any]:
    """Every effective setting by environment variable, secrets masked, as `tallow config` shows."""
    shown: dict[str, Any] = {}
    for setting in SETTINGS:
        value = getattr(settings, setting.name)
        if isinstance(value, tuple):
            value = ",".join(str(item) for item in value)
        if isinstance(value, RedisURL):
            value = value.masked()
        elif setting.secret and value:
            value = "***"
        shown[setting.env] = value
    return shown
