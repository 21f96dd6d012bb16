"""The production image, built from a local base and run the way production runs it.

Selected only with `-m container` (scripts/container-test.sh): it needs root, podman, buildah
and debootstrap, and takes minutes. No registry is needed: the base images are made here with
debootstrap and passed to packaging/Dockerfile as BASE_IMAGE and NODE_IMAGE.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from harness.processes import free_port, http_get
from tests.deployment.tools import ROOT, assert_succeeds, run, tool

pytestmark = pytest.mark.container

BASES = {
    # Like python:3.11-slim-bookworm: Python with venv, certificates.
    "localhost/tallow-base:bookworm": ["python3", "python3-venv", "ca-certificates"],
    # For the web UI build stage.
    "localhost/tallow-node:bookworm": ["nodejs", "npm", "ca-certificates"],
}
IMAGE = "localhost/tallow:container-test"
DEV_IMAGE = "localhost/tallow-dev:container-test"
# The builds inside reach the package registries the way this machine does: with its trust store
# (which may include a TLS-inspecting proxy's CA), for apt, pip and npm alike.
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
TRUST = [f"ENV {name}={CA_BUNDLE}" for name in ("PIP_CERT", "NODE_EXTRA_CA_CERTS")]
# This sandbox's podman: crun cannot set rlimits here, runc can when they are not raised.
PODMAN_RUN = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def _make_base(image: str, packages: list[str]) -> None:
    if run([tool("podman"), "image", "exists", image]).returncode == 0:
        return
    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder:
        rootfs = Path(folder) / "rootfs"
        command = [tool("debootstrap"), "--variant=minbase", "bookworm", str(rootfs)]
        assert_succeeds(run(command, timeout=1200))
        # apt, not debootstrap --include, resolves the packages' dependencies completely.
        apt = ["chroot", str(rootfs), "apt-get", "-q", "-y", "--no-install-recommends"]
        assert_succeeds(run([*apt, "install", *packages], timeout=1200))
        assert_succeeds(run([*apt, "clean"]))
        for item in (rootfs / "var/lib/apt/lists").glob("*"):
            if item.is_file():
                item.unlink()
        shutil.copy(CA_BUNDLE, rootfs / CA_BUNDLE.lstrip("/"))
        changes = [arg for change in TRUST for arg in ("--change", change)]
        script = f'podman="$1"; shift; tar -C "{rootfs}" -c . | "$podman" import "$@" - "$0"'
        command = ["sh", "-c", script, image, tool("podman"), *changes]
        assert_succeeds(run(command, timeout=600))


@pytest.fixture(scope="module")
def bases() -> None:
    for base, packages in BASES.items():
        _make_base(base, packages)


def _build(dockerfile: str, tag: str) -> str:
    # Docker format keeps the HEALTHCHECK (the OCI image format has no such field).
    command = [tool("buildah"), "bud", "--isolation", "chroot", "--layers", "--format", "docker"]
    command += ["--ignorefile", "packaging/Dockerfile.dockerignore", "-f", dockerfile]
    command += ["--build-arg", "BASE_IMAGE=localhost/tallow-base:bookworm"]
    command += ["--build-arg", "NODE_IMAGE=localhost/tallow-node:bookworm"]
    started = time.monotonic()
    assert_succeeds(run([*command, "-t", tag, "."], timeout=1800, cwd=ROOT))
    size = run([tool("podman"), "image", "inspect", "--format", "{{.Size}}", tag]).stdout
    print(f"\nimage {tag}: {int(size) / 1e6:.1f} MB, built in {time.monotonic() - started:.0f} s")
    return tag


@pytest.fixture(scope="module")
def image(bases: None) -> str:
    return _build("packaging/Dockerfile", IMAGE)


def _inspect(container: str, template: str) -> str:
    return run([tool("podman"), "inspect", "--format", template, container]).stdout.strip()


def _start(image: str, *options: str) -> tuple[str, int]:
    """Run the image on a free loopback port; (container name, port)."""
    port = free_port()
    name = f"tallow-container-test-{port}"
    command = [tool("podman"), "run", "-d", "--name", name, *PODMAN_RUN, "--network", "host"]
    command += ["-e", f"TALLOW_PORT={port}", "-e", "TALLOW_HOST=127.0.0.1", *options]
    assert_succeeds(run([*command, image]))
    return name, port


def _wait_healthy(name: str, port: int, after: float = 0.0) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            answer = http_get(f"http://127.0.0.1:{port}/api/health", timeout=1)
            if answer[0] == 200 and json.loads(answer[2])["uptime"] < time.time() - after:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(run([tool("podman"), "logs", name]).stdout)


def test_image_runs_read_only_as_non_root_and_stops_cleanly_on_sigterm(image: str) -> None:
    podman = tool("podman")
    name, port = _start(image, "--read-only")
    try:
        _wait_healthy(name, port)
        assert run([podman, "exec", name, "id", "-u"]).stdout.strip() == "10001"
        as_root = run([podman, "exec", "--user", "0", name, "touch", "/opt/tallow/x"])
        assert as_root.returncode != 0 and "Read-only file system" in as_root.stderr
        assert_succeeds(run([podman, "healthcheck", "run", name]))
        assert_succeeds(run([podman, "exec", name, "tallow", "check", "--ready"]))
        assert _inspect(name, "{{.Config.User}}") == "10001:10001"

        assert_succeeds(run([podman, "stop", "--time", "30", name], timeout=60))
        assert _inspect(name, "{{.State.ExitCode}}") == "0", run([podman, "logs", name]).stdout
        assert '"msg":"stopped"' in run([podman, "logs", name]).stdout
    finally:
        run([podman, "rm", "--force", name])


def test_dev_image_runs_live_code_and_reloads_on_change(bases: None) -> None:
    dev = _build("packaging/Dockerfile.dev", DEV_IMAGE)
    podman = tool("podman")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder:
        source = Path(folder) / "tallow"
        shutil.copytree(ROOT / "tallow", source, ignore=shutil.ignore_patterns("__pycache__"))
        Path(folder).chmod(0o755)  # readable for the image's uid 10001, like a checkout
        name, port = _start(dev, "-v", f"{source}:/app/tallow:ro")
        try:
            _wait_healthy(name, port)
            edited = time.time()
            with (source / "runtime.py").open("a") as module:
                module.write("\n# edited while running\n")
            _wait_healthy(name, port, after=edited)
            assert "code changed, restarting" in run([podman, "logs", name]).stderr
            assert_succeeds(run([podman, "stop", "--time", "30", name], timeout=60))
            assert _inspect(name, "{{.State.ExitCode}}") == "0"
        finally:
            run([podman, "rm", "--force", name])
