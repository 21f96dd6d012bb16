"""The ``tallow`` command: serve, check, config, bench, version, and the peer's send and receive.

Every setting in tallow.config.SETTINGS becomes a flag of ``serve`` and ``config``; a flag beats
the environment variable, which beats the default.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import click

from tallow import __version__
from tallow.config import SETTINGS, ConfigError, Settings, describe, load

EXIT_CONFIG = 2


def _settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for setting in reversed(SETTINGS):
        command = click.option(
            setting.flag,
            setting.name,
            default=None,
            metavar="VALUE",
            help=f"{setting.help} [env {setting.env}; default {setting.default or 'unset'}]",
        )(command)
    return command


def _load(overrides: dict[str, str | None]) -> Settings:
    try:
        return load(overrides=overrides)
    except ConfigError as error:
        click.echo(f"tallow: configuration error: {error}", err=True)
        sys.exit(EXIT_CONFIG)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """Tallow: rendezvous for private, post-quantum peer-to-peer file transfer."""


@main.command()
@click.option("--reload", is_flag=True, help="Restart when a file of the tallow package changes.")
@_settings_options
def serve(reload: bool, **overrides: str | None) -> None:
    """Run the server (HTTP, UI and signaling) until SIGTERM or Ctrl-C."""
    settings = _load(overrides)
    if reload:
        from tallow.reload import run_with_reload

        sys.exit(run_with_reload([a for a in sys.argv[1:] if a != "--reload"]))

    import trio

    from tallow.observability.logs import configure
    from tallow.server import serve as run_server

    configure(settings.log_level, settings.log_format, settings.node)
    try:
        trio.run(run_server, settings)
    except ConfigError as error:
        click.echo(f"tallow: configuration error: {error}", err=True)
        sys.exit(EXIT_CONFIG)
    except OSError as error:  # the port is taken, the address does not exist, ...
        click.echo(f"tallow: cannot listen on {settings.host}:{settings.port}: {error}", err=True)
        sys.exit(1)


@main.command()
@click.argument("url", required=False)
@click.option(
    "--ready",
    is_flag=True,
    help="Check /api/ready (can take traffic) instead of /api/health (is alive).",
)
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for an answer.")
def check(url: str | None, ready: bool, timeout: float) -> None:
    """Probe a running server; exit 0 when it is healthy, 1 when not.

    URL defaults to http://127.0.0.1:$TALLOW_PORT. A URL without a path gets /api/health
    (or /api/ready with --ready).
    """
    if url is None:
        port = _load({}).port
        url = f"http://127.0.0.1:{port}"
    if urlsplit(url).path in ("", "/"):
        url = url.rstrip("/") + ("/api/ready" if ready else "/api/health")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as answer:
        status, body = answer.code, answer.read()
    except (urllib.error.URLError, OSError) as problem:
        click.echo(f"unhealthy: {url}: {getattr(problem, 'reason', problem)}", err=True)
        sys.exit(1)
    try:
        summary = json.loads(body).get("status", "")
    except (ValueError, AttributeError):
        summary = ""
    if status != 200:
        click.echo(f"unhealthy: {url}: HTTP {status} {summary}".rstrip(), err=True)
        sys.exit(1)
    click.echo(f"healthy: {url}: HTTP {status} {summary}".rstrip())


@main.command("config")
@_settings_options
def show_config(**overrides: str | None) -> None:
    """Print the effective configuration (secrets masked) and exit 2 if it is invalid."""
    settings = _load(overrides)
    for env, value in describe(settings).items():
        click.echo(f"{env}={'' if value is None else value}")


@main.command()
@click.argument("url", default="ws://127.0.0.1:3000/signaling")
@click.option("--pairs", default=100, show_default=True, help="Peer pairs, each in its own room.")
@click.option("--seconds", default=10.0, show_default=True, help="How long to measure.")
@click.option(
    "--payload",
    "payload_bytes",
    default=300,
    show_default=True,
    help="Bytes of payload per signal.",
)
@click.option("--inflight", default=1, show_default=True, help="Signals each pair keeps in flight.")
@click.option("--insecure", is_flag=True, help="Accept any TLS certificate (wss:// test setups).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def bench(
    url: str,
    pairs: int,
    seconds: float,
    payload_bytes: int,
    inflight: int,
    insecure: bool,
    as_json: bool,
) -> None:
    """Load-test a Tallow signaling URL with closed-loop signal round trips.

    The server's per-connection rate limit (TALLOW_RATE_LIMIT, 50/s by default) caps what one
    pair can relay; set it to 0 on the server under test to measure raw capacity.
    """
    import trio

    from tallow.bench import BenchResult, run_bench

    def progress(result: BenchResult, elapsed: float) -> None:
        click.echo(
            f"\r{elapsed:5.1f}s  {result.relayed / elapsed:10.0f} msg/s  "
            f"errors {sum(result.errors.values())}",
            nl=False,
            err=True,
        )

    show = progress if sys.stderr.isatty() and not as_json else None
    try:
        result = trio.run(
            lambda: run_bench(
                url,
                pairs=pairs,
                seconds=seconds,
                payload_bytes=payload_bytes,
                inflight=inflight,
                insecure=insecure,
                progress=show,
            )
        )
    except Exception as failure:
        error: BaseException = failure
        while isinstance(error, BaseExceptionGroup):  # the first cause, out of the nurseries
            error = error.exceptions[0]
        detail = str(error) or repr(error.__cause__ or error.__context__ or error)
        click.echo(f"tallow bench: {url}: {type(error).__name__}: {detail}", err=True)
        sys.exit(1)
    if show:
        click.echo("", err=True)
    summary = result.summary()
    if as_json:
        click.echo(json.dumps(summary))
        return
    rtt = summary["rtt_ms"]
    click.echo(
        f"{summary['messages_per_second']:.0f} relayed messages/s over {pairs} pairs "
        f"({payload_bytes} B payload, {inflight} in flight, {seconds:g} s)"
    )
    click.echo(f"round trip ms: p50 {rtt['p50']}  p99 {rtt['p99']}  max {rtt['max']}")
    click.echo(
        f"connections/s: {summary['connections_per_second']}  errors: {summary['errors'] or 'none'}"
    )


def _peer() -> ModuleType:
    """The command-line peer, which lives in the optional `peer` extra (docs/cli.md)."""
    try:
        from tallow.peer import main as peer
    except ImportError as missing:
        click.echo(
            f"tallow: send and receive need the command-line peer ({missing.name} is missing): "
            "install Tallow with its peer extra (in a checkout: "
            ".venv/bin/pip install -e '.[peer]'), or run tallow-peer.pyz instead of tallow.pyz",
            err=True,
        )
        sys.exit(1)
    return peer


_server_option = click.option(
    "--server", envvar="TALLOW_SERVER", metavar="URL", help="The Tallow server [env TALLOW_SERVER]."
)
_relay_option = click.option(
    "--relay", is_flag=True, help="Connect only through the server's TURN relay (hides your IP)."
)
_name_option = click.option("--name", default="Terminal", show_default=True, help="Shown to them.")
_timeout_option = click.option(
    "--connect-timeout", default=30.0, show_default=True, metavar="SECONDS",
    help="How long the other side may take to connect once it is in the room.",
)  # fmt: skip


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--text", help="Send this text too (at most 1 MiB).")
@_server_option
@_relay_option
@click.option("--yes", is_flag=True, help="Do not ask whether the words match (for scripts).")
@_name_option
@_timeout_option
def send(
    paths: tuple[Path, ...], text: str | None, server: str | None, relay: bool, yes: bool,
    name: str, connect_timeout: float,
) -> None:  # fmt: skip
    """Create a room; send files, folders (PATHS) or a text to whoever joins it (docs/cli.md)."""
    if not paths and text is None:
        raise click.UsageError("give files or folders to send, or --text")
    server = server or "http://127.0.0.1:3000"
    sys.exit(
        _peer().send(
            list(paths), text, server, relay=relay, yes=yes, name=name, timeout=connect_timeout
        )
    )


@main.command()
@click.argument("target", metavar="CODE|LINK")
@_server_option
@click.option("--out", type=click.Path(path_type=Path), default=Path("."), help="Where files go.")
@_relay_option
@click.option("--accept", is_flag=True, help="Take every offer without asking (for scripts).")
@_name_option
@_timeout_option
def receive(
    target: str, server: str | None, out: Path, relay: bool, accept: bool, name: str,
    connect_timeout: float,
) -> None:  # fmt: skip
    """Join a room by code or link and receive files into --out (docs/cli.md)."""
    sys.exit(
        _peer().receive(
            target, server, out, relay=relay, accept=accept, name=name, timeout=connect_timeout
        )
    )


@main.command()
def version() -> None:
    """Print the version."""
    click.echo(f"tallow {__version__}")
