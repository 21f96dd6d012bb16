"""The deployment artifacts, loaded: Compose files, rendered Kubernetes manifests, nginx.conf."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.deployment.tools import ROOT, assert_succeeds, run, tool

COMPOSE_DIR = ROOT / "manifests" / "compose"
K8S_DIR = ROOT / "manifests" / "k8s"
NGINX_CONF = ROOT / "packaging" / "nginx" / "nginx.conf"
COTURN_CONF = ROOT / "packaging" / "coturn" / "turnserver.conf"
DOCKERFILES = (ROOT / "packaging" / "Dockerfile", ROOT / "packaging" / "Dockerfile.dev")
ENV_EXAMPLE = ROOT / ".env.example"
_CHECKS = ("health-check", "container-test", "redis-backup")
SCRIPTS = sorted(
    [*ROOT.glob("scripts/deploy-*.sh"), *(ROOT / "scripts" / f"{name}.sh" for name in _CHECKS)]
)

COMPOSE_SETS: dict[str, tuple[str, ...]] = {
    "dev": ("docker-compose.dev.yml",),
    "base": ("docker-compose.yml",),
    "prod": ("docker-compose.yml", "docker-compose.prod.yml"),
}
KUSTOMIZATIONS = ("base", "overlays/dev", "overlays/prod", "monitoring", "cert-manager")
DASHBOARD = K8S_DIR / "monitoring" / "grafana-dashboard.json"
ALERT_RULES = K8S_DIR / "monitoring" / "prometheusrule.yaml"

_ENV_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")
_INTERPOLATION = re.compile(r"\$\{([A-Z][A-Z0-9_]*)")


def compose_command(name: str) -> list[str]:
    files = [arg for file in COMPOSE_SETS[name] for arg in ("-f", str(COMPOSE_DIR / file))]
    return [tool("docker-compose"), "--env-file", str(ENV_EXAMPLE), *files]


@cache
def compose_config(name: str) -> dict[str, Any]:
    """The merged, interpolated Compose model, as `docker-compose config` prints it."""
    result = run([*compose_command(name), "config", "--format", "json"])
    assert_succeeds(result)
    return json.loads(result.stdout)


def compose_variables() -> set[str]:
    """Every ${VARIABLE} the Compose files interpolate (comments left out)."""
    return {
        name
        for path in COMPOSE_DIR.glob("*.yml")
        for line in path.read_text().splitlines()
        if not line.lstrip().startswith("#")
        for name in _INTERPOLATION.findall(line)
    }


def env_example() -> dict[str, tuple[str, bool]]:
    """NAME -> (value, set) for every variable .env.example names, set or commented out."""
    entries: dict[str, tuple[str, bool]] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = _ENV_LINE.match(line)
        if match:
            value = match.group(2).split("  #")[0].strip()
            entries[match.group(1)] = (value, not line.startswith("#"))
    return entries


@cache
def kustomize(directory: str) -> tuple[dict[str, Any], ...]:
    result = run([tool("kubectl"), "kustomize", str(K8S_DIR / directory)])
    assert_succeeds(result)
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(documents: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


def tallow_containers(documents: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    """(workload name, container) for every container that runs the Tallow image."""
    found = []
    for doc in documents:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                if container["image"].rsplit("/", 1)[-1].startswith("tallow"):
                    found.append((doc["metadata"]["name"], container))
    return found


def role_of(args: list[str]) -> str:
    return args[args.index("--role") + 1] if "--role" in args else "all"


def nginx_directives(name: str) -> list[str]:
    """The arguments of every `name ...;` directive in the shipped nginx.conf."""
    pattern = re.compile(rf"^\s*{re.escape(name)}\s+(.+?);\s*$", re.MULTILINE)
    return pattern.findall(NGINX_CONF.read_text())


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (match.group(1).upper(), match.group(2))
        for match in re.finditer(r"^([A-Za-z]+)\s+(.*)$", joined, re.MULTILINE)
    ]
