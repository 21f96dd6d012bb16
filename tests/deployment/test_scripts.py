"""The operator scripts: --help, exit codes, and colour only on a terminal."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import free_port
from tests.deployment.artifacts import SCRIPTS
from tests.deployment.tools import ROOT, run, tool

HEALTH_CHECK = str(ROOT / "scripts" / "health-check.sh")
ESCAPE = "\033["


@pytest.mark.parametrize(
    "script", [s for s in SCRIPTS if s.name != "deploy-lib.sh"], ids=lambda s: s.name
)
def test_every_script_explains_itself(script: Any) -> None:
    result = run([str(script), "--help"])
    assert result.returncode == 0 and result.stdout.startswith("Usage: scripts/"), result
    assert run([str(script), "--no-such-option"]).returncode == 2


def test_health_check_passes_on_a_healthy_server_without_colour_off_a_terminal(
    tallow_server: Any,
) -> None:
    result = run([HEALTH_CHECK, tallow_server.url])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok   ") == 5 and ESCAPE not in result.stdout


def test_health_check_fails_when_nothing_answers_and_colours_a_terminal() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert run([HEALTH_CHECK, url]).returncode == 1
    # script(1) gives the command a terminal: now the verdicts are coloured.
    result = run([tool("script"), "-qec", f"{HEALTH_CHECK} {url}", "/dev/null"])
    assert result.returncode == 1
    assert f"{ESCAPE}31mFAIL" in result.stdout
