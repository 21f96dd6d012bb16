"""The operator scripts: --help, exit codes, and colour only on a terminal."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.processes import free_port
from tests.deployment import nginx
from tests.deployment.artifacts import SCRIPTS
from tests.deployment.tools import ROOT, VENV_BIN, run, tool

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


def test_deploy_prod_dry_run_validates_env_and_certificates(tmp_path: Path) -> None:
    """In a copy of the deployment files, so the checkout's own .env is never touched."""
    for folder in ("scripts", "manifests", "packaging"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    nginx.make_certificate(tmp_path / "certs")
    example = (ROOT / ".env.example").read_text()
    env_file = tmp_path / ".env"
    env_file.write_text(example)
    deploy = [str(tmp_path / "scripts" / "deploy-prod.sh"), "--dry-run"]
    # docker-compose from the test environment stands in for `docker compose`.
    path = {"PATH": f"{VENV_BIN}:{os.environ['PATH']}"}

    refused = run(deploy, env={**os.environ, **path})
    assert refused.returncode == 1 and "placeholder values" in refused.stderr, refused

    secrets = {"REDIS_PASSWORD": "3f9a1c2b" * 4, "TURN_SECRET": "7d0e5a61" * 4}
    for name, value in secrets.items():
        example = example.replace(f"{name}=change-me-openssl-rand-hex-32", f"{name}={value}")
    env_file.write_text(example)
    accepted = run(deploy, env={**os.environ, **path})
    assert accepted.returncode == 0 and "configuration valid" in accepted.stdout, accepted

    (tmp_path / "certs" / "tls.key").unlink()
    missing = run(deploy, env={**os.environ, **path})
    assert missing.returncode == 1 and "tls.key is missing" in missing.stderr, missing
