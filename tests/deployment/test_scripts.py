"""The operator scripts: --help, exit codes, colour only on a terminal, dry runs with real files
(bad secrets refused), and Redis backup and restore against a real redis-server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.processes import free_port
from harness.redis import RedisServer
from tests.deployment import nginx
from tests.deployment.artifacts import K8S_DIR, SCRIPTS
from tests.deployment.tools import ROOT, VENV_BIN, run, tool

HEALTH_CHECK = str(ROOT / "scripts" / "health-check.sh")
DEPLOY_K8S = str(ROOT / "scripts" / "deploy-k8s.sh")
REDIS_BACKUP = str(ROOT / "scripts" / "redis-backup.sh")
NGINX_UID = 101
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


def test_deploy_prod_dry_run_validates_env_secrets_and_certificates(tmp_path: Path) -> None:
    """In a copy of the deployment files, so the checkout's own .env is never touched."""
    for folder in ("scripts", "manifests", "packaging"):
        shutil.copytree(ROOT / folder, tmp_path / folder, symlinks=True)
    nginx.make_certificate(tmp_path / "certs")
    example = (ROOT / ".env.example").read_text()
    env_file = tmp_path / ".env"
    env_file.write_text(example)
    deploy = [str(tmp_path / "scripts" / "deploy-prod.sh"), "--dry-run"]
    # docker-compose from the test environment stands in for `docker compose`.
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}

    def refused(message: str) -> None:
        result = run(deploy, env=env)
        assert result.returncode == 1 and message in result.stderr, result

    # openssl wrote the key as root, 0600, as certbot does: nginx (uid 101) cannot read it.
    refused("nginx (uid 101) cannot read")
    os.chown(tmp_path / "certs" / "tls.key", NGINX_UID, NGINX_UID)
    refused("placeholder values")

    secrets = {"REDIS_PASSWORD": "3f9a1c2b" * 4, "TURN_SECRET": "7d0e5a61" * 4}
    for name, value in secrets.items():
        example = example.replace(f"{name}=change-me-openssl-rand-hex-32", f"{name}={value}")
    env_file.write_text(example.replace(secrets["REDIS_PASSWORD"], "not/url@safe"))
    refused("must be URL-safe")
    env_file.write_text(example)
    accepted = run(deploy, env=env)
    assert accepted.returncode == 0 and "configuration valid" in accepted.stdout, accepted

    (tmp_path / "certs" / "tls.key").unlink()
    refused("tls.key is missing")


def test_compose_version_gate() -> None:
    lib = ROOT / "scripts" / "deploy-lib.sh"
    for version, expected in (("v2.24.0", 0), ("2.30.1", 0), ("5.6.1", 0), ("2.23.9", 1)):
        result = run(["bash", "-c", f'source "{lib}" && version_at_least {version} 2.24'])
        assert result.returncode == expected, version
    assert run(["bash", "-c", f'source "{lib}" && version_at_least "" 2.24']).returncode == 1


def _secret(tmp_path: Path, **values: str) -> Path:
    template = yaml.safe_load((K8S_DIR / "base" / "secret.template.yaml").read_text())
    template["stringData"] = values
    path = tmp_path / "secret.yaml"
    path.write_text(yaml.safe_dump(template))
    return path


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"REDIS_PASSWORD": "CHANGE-ME", "TURN_SECRET": "t"}, "REDIS_PASSWORD in tallow-secrets"),
        ({"REDIS_PASSWORD": "0a1b2c", "TURN_SECRET": "CHANGE-ME"}, "TURN_SECRET in tallow-secrets"),
        ({"REDIS_PASSWORD": "0a1b2c"}, "has no TURN_SECRET"),
        ({"REDIS_PASSWORD": "a@b/c", "TURN_SECRET": "t"}, "must be URL-safe"),
    ],
)
def test_deploy_k8s_refuses_bad_secrets(
    tmp_path: Path, values: dict[str, str], message: str
) -> None:
    result = run(
        [DEPLOY_K8S, "production", "--render", "--secret-file", str(_secret(tmp_path, **values))]
    )
    assert result.returncode == 1 and message in result.stderr, result
    assert not result.stdout


def test_deploy_k8s_renders_the_seed_environments_into_the_namespace_asked(tmp_path: Path) -> None:
    secret = _secret(tmp_path, REDIS_PASSWORD="0a1b2c3d", TURN_SECRET="turn secret")
    for environment, namespace in (("production", "tallow"), ("staging", "tallow-dev")):
        result = run([DEPLOY_K8S, environment, "--render", "--secret-file", str(secret)])
        assert result.returncode == 0, result
        documents = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        assert {doc["metadata"].get("namespace", namespace) for doc in documents} == {namespace}
    moved = run([DEPLOY_K8S, "prod", "--render", "--namespace", "tallow-blue"])
    assert moved.returncode == 0, moved
    documents = [doc for doc in yaml.safe_load_all(moved.stdout) if doc]
    assert {
        doc["metadata"].get("namespace") for doc in documents if doc["kind"] != "Namespace"
    } == {"tallow-blue"}
    assert [d["metadata"]["name"] for d in documents if d["kind"] == "Namespace"] == ["tallow-blue"]
    assert not list(K8S_DIR.glob(".namespace-*"))  # the helper kustomization is gone


def test_redis_backup_keeps_the_newest_and_restores_the_data(tmp_path: Path) -> None:
    password = "backup-test-password"
    # No wait for other replicas before a snapshot (Redis's default is 5 s per backup).
    redis = RedisServer(
        tmp_path / "live",
        extra=["--requirepass", password, "--repl-diskless-sync-delay", "0"],
        cli_args=["-a", password, "--no-auth-warning"],
    ).start()
    env = {**os.environ, "REDISCLI_AUTH": password, "REDIS_PORT": str(redis.port)}
    backups = tmp_path / "backups"
    try:
        redis.cli("SET", "tallow:room:1", "first")
        written = []
        for round_ in range(3):
            redis.cli("SET", "tallow:round", str(round_))
            result = run([REDIS_BACKUP, "backup", str(backups), "2"], env=env)
            assert result.returncode == 0, result
            written.append(result.stdout.split("wrote ")[1].split(" ")[0])
            if round_ < 2:
                run(["sleep", "1.1"])  # backups are named by the second
        wrong = run([REDIS_BACKUP, "backup", str(backups), "2"], env={**env, "REDISCLI_AUTH": "x"})
        assert wrong.returncode == 1 and "redis-cli --rdb failed" in wrong.stderr
    finally:
        redis.kill()
    kept = sorted(str(path) for path in backups.glob("redis-*.rdb"))
    assert kept == sorted(written[1:])  # retention: the newest two

    # Restore into a data folder with other (AOF) data, then start Redis as production does.
    data = tmp_path / "restored"
    (data / "appendonlydir").mkdir(parents=True)
    result = run([REDIS_BACKUP, "restore", written[-1], str(data)], env=env)
    assert result.returncode == 0 and "(2 keys)" in result.stdout, result
    restored = RedisServer(data, extra=["--appendonly", "yes"]).start()
    try:
        assert restored.cli("GET", "tallow:room:1") == "first"
        assert restored.cli("GET", "tallow:round") == "2"
    finally:
        restored.kill()
    assert list(data.glob("appendonlydir.before-restore-*"))
    not_rdb = tmp_path / "not.rdb"
    not_rdb.write_text("hello")
    refused = run([REDIS_BACKUP, "restore", str(not_rdb), str(data)])
    assert refused.returncode == 1 and "not an RDB snapshot" in refused.stderr
