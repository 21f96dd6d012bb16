"""The production image, built from a local base and run the way production runs it.

Selected only with `-m container` (scripts/container-test.sh): it needs root, podman, buildah
and debootstrap, and takes minutes. No registry is needed: the base images are made here with
debootstrap and passed to packaging/Dockerfile as BASE_IMAGE and NODE_IMAGE.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, http_get
from tests.deployment.tools import ROOT, assert_succeeds, run, tool

pytestmark = pytest.mark.container

BASES = {
    # Like python:3.11-slim-bookworm: Python with venv, certificates.
    "localhost/tallow-base:bookworm": "python3,python3-venv,ca-certificates",
    # For the web UI build stage.
    "localhost/tallow-node:bookworm": "nodejs,npm,ca-certificates",
}
IMAGE = "localhost/tallow:container-test"
# The builds inside reach the package registries the way this machine does: with its trust store
# (which may include a TLS-inspecting proxy's CA), for apt, pip and npm alike.
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
TRUST = [f"ENV {name}={CA_BUNDLE}" for name in ("PIP_CERT", "NODE_EXTRA_CA_CERTS")]
# This sandbox's podman: crun cannot set rlimits here, runc can when they are not raised.
PODMAN_RUN = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def _make_base(image: str, packages: str) -> None:
    if run([tool("podman"), "image", "exists", image]).returncode == 0:
        return
    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder:
        rootfs = Path(folder) / "rootfs"
        command = [tool("debootstrap"), "--variant=minbase", f"--include={packages}"]
        assert_succeeds(run([*command, "bookworm", str(rootfs)], timeout=1200))
        # debootstrap resolves --include only partly (npm misses some of its dependencies).
        fix = ["chroot", str(rootfs), "apt-get", "--fix-broken", "install", "-y", "-q"]
        assert_succeeds(run([*fix, "--no-install-recommends"], timeout=1200))
        assert_succeeds(run(["chroot", str(rootfs), "apt-get", "clean"]))
        for item in (rootfs / "var/lib/apt/lists").glob("*"):
            if item.is_file():
                item.unlink()
        shutil.copy(CA_BUNDLE, rootfs / CA_BUNDLE.lstrip("/"))
        changes = [arg for change in TRUST for arg in ("--change", change)]
        script = f'podman="$1"; shift; tar -C "{rootfs}" -c . | "$podman" import "$@" - "$0"'
        command = ["sh", "-c", script, image, tool("podman"), *changes]
        assert_succeeds(run(command, timeout=600))


@pytest.fixture(scope="module")
def image() -> str:
    for base, packages in BASES.items():
        _make_base(base, packages)
    # Docker format keeps the HEALTHCHECK (the OCI image format has no such field).
    command = [tool("buildah"), "bud", "--isolation", "chroot", "--layers", "--format", "docker"]
    command += ["--ignorefile", "packaging/Dockerfile.dockerignore", "-f", "packaging/Dockerfile"]
    command += ["--build-arg", "BASE_IMAGE=localhost/tallow-base:bookworm"]
    command += ["--build-arg", "NODE_IMAGE=localhost/tallow-node:bookworm"]
    started = time.monotonic()
    assert_succeeds(run([*command, "-t", IMAGE, "."], timeout=1800, cwd=ROOT))
    size = run([tool("podman"), "image", "inspect", "--format", "{{.Size}}", IMAGE]).stdout
    print(f"\nimage {IMAGE}: {int(size) / 1e6:.1f} MB, built in {time.monotonic() - started:.0f} s")
    return IMAGE


def _inspect(container: str, template: str) -> str:
    return run([tool("podman"), "inspect", "--format", template, container]).stdout.strip()


def test_image_runs_read_only_as_non_root_and_stops_cleanly_on_sigterm(image: str) -> None:
    port = free_port()
    name = f"tallow-container-test-{port}"
    podman = tool("podman")
    command = [podman, "run", "-d", "--name", name, *PODMAN_RUN, "--read-only"]
    command += ["--network", "host", "-e", f"TALLOW_PORT={port}", "-e", "TALLOW_HOST=127.0.0.1"]
    assert_succeeds(run([*command, image]))
    try:
        deadline = time.monotonic() + 30
        status = 0
        while time.monotonic() < deadline and status != 200:
            try:
                status = http_get(f"http://127.0.0.1:{port}/api/health", timeout=1)[0]
            except OSError:
                time.sleep(0.2)
        assert status == 200, run([podman, "logs", name]).stdout
        assert run([podman, "exec", name, "id", "-u"]).stdout.strip() == "10001"
        assert run([podman, "exec", name, "touch", "/opt/tallow/x"]).returncode != 0
        assert_succeeds(run([podman, "healthcheck", "run", name]))
        assert_succeeds(run([podman, "exec", name, "tallow", "check", "--ready"]))
        assert _inspect(name, "{{.Config.User}}") == "10001:10001"

        assert_succeeds(run([podman, "stop", "--time", "30", name], timeout=60))
        assert _inspect(name, "{{.State.ExitCode}}") == "0", run([podman, "logs", name]).stdout
        assert '"msg":"stopped"' in run([podman, "logs", name]).stdout
    finally:
        run([podman, "rm", "--force", name])
