"""Finding and running the real tools the deployment checks use."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

# checkov pins packaging<24 while pytest needs >=24, so it cannot share the test environment:
# it gets a virtualenv of its own, made on first use in the user's cache folder, so that every
# checkout on this machine (CI's fresh clones too) shares one.
CHECKOV_VERSION = "3.3.30"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tallow"
CHECKOV_HOME = CACHE / f"checkov-{CHECKOV_VERSION}"


def tool(name: str) -> str:
    """Path of a command: the test virtualenv first (PyPI tools), then PATH (Debian packages)."""
    local = VENV_BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed: Debian tools come from scripts/apt-packages.txt, "
            "Python tools from setup.cfg's test extras"
        )
    return found


def run(
    command: list[str], *, timeout: float = 120, cwd: Path = ROOT, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def assert_succeeds(result: subprocess.CompletedProcess[str]) -> None:
    command = " ".join(str(part) for part in result.args)
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, f"{command}\nexit {result.returncode}\n{output}"


def checkov() -> str:
    """The pinned checkov, installed into its own virtualenv when it is not there yet."""
    complete = CHECKOV_HOME / "installed"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"checkov-{CHECKOV_VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time; the others wait, then reuse
        if not complete.exists():
            shutil.rmtree(CHECKOV_HOME, ignore_errors=True)  # a half-made one from a killed run
            venv.create(CHECKOV_HOME, with_pip=True)
            pip = [str(CHECKOV_HOME / "bin" / "python"), "-m", "pip", "install", "--quiet"]
            assert_succeeds(run([*pip, f"checkov=={CHECKOV_VERSION}"], timeout=900))
            complete.touch()
    return str(CHECKOV_HOME / "bin" / "checkov")
