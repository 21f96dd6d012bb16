"""The zipapp: one reproducible file that runs with a fresh HOME from a read-only folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.processes import ROOT, http_get, launch


@pytest.fixture(scope="module")
def zipapps(tmp_path_factory) -> tuple[Path, Path]:
    """The zipapp built twice from the same tree (UI already built by the test command)."""
    folder = tmp_path_factory.mktemp("zipapp")
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "TALLOW_PYTHON_VERSIONS": f"{sys.version_info.major}.{sys.version_info.minor}",
    }
    built = []
    for name in ("first.pyz", "second.pyz"):
        output = folder / name
        subprocess.run(
            [str(ROOT / "scripts" / "build-zipapp.sh"), "--skip-ui", "--output", str(output)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        built.append(output)
    return built[0], built[1]


def test_build_is_reproducible(zipapps) -> None:
    first, second = zipapps
    digest = [hashlib.sha256(path.read_bytes()).hexdigest() for path in (first, second)]
    assert digest[0] == digest[1]
    assert first.stat().st_size < 40 << 20


def test_runs_from_a_read_only_folder_with_a_fresh_home(zipapps, tmp_path) -> None:
    install = tmp_path / "opt"
    install.mkdir()
    app = install / "tallow.pyz"
    shutil.copy(zipapps[0], app)
    install.chmod(0o555)
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "LOG_FORMAT": "json"}
    try:
        server = launch(tmp_path, env=env, command=[sys.executable, str(app)])
        try:
            status, _, body = http_get(server.url + "/api/ready")
            assert status == 200 and b'"pqc":{"ok":true' in body
            status, headers, _ = http_get(server.url + "/")
            assert status == 200 and headers["content-type"].startswith("text/html")
            assert server.terminate() == 0
        finally:
            server.kill()
        assert any((home / ".shiv").iterdir())  # unpacked under the fresh HOME
        # SHIV_ROOT moves the unpacked copy elsewhere (e.g. a writable volume).
        shiv_root = tmp_path / "shiv-root"
        result = subprocess.run(
            [sys.executable, str(app), "version"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "SHIV_ROOT": str(shiv_root)},
        )
        assert result.stdout.startswith("tallow ") and any(shiv_root.iterdir())
    finally:
        install.chmod(0o755)
