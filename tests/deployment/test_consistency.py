"""Every name an artifact uses exists in the code: settings, routes, ports, metrics, headers.

The names come from the code itself (tallow.config.SETTINGS, tallow.http.routes.ROUTES,
tallow.observability.metrics.REGISTRY, tallow.http.headers), never from a copied list.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tallow.config import ROLES, load
from tallow.http.headers import security_headers
from tallow.http.routes import ROUTES, SIGNALING_PATH
from tallow.http.static import _FINGERPRINTED
from tests.deployment.artifacts import (
    ALERT_RULES,
    COMPOSE_SETS,
    COTURN_CONF,
    DASHBOARD,
    DOCKERFILES,
    ENV_EXAMPLE,
    K8S_DIR,
    NGINX_CONF,
    SCRIPTS,
    compose_config,
    compose_variables,
    dockerfile_instructions,
    env_example,
    kustomize,
    nginx_directives,
    of_kind,
    role_of,
    tallow_containers,
)
from tests.deployment.exported import (
    DEFAULTS,
    SERIES,
    SETTING_ENVS,
    route_serves,
    series_in,
    static_served_by,
)
from tests.deployment.tools import ROOT

OVERLAYS = ("overlays/dev", "overlays/prod")
EXPANSION = re.compile(r"\$\(([A-Z_][A-Z0-9_]*)\)")


def _example_settings() -> dict[str, str]:
    return {
        name: value
        for name, (value, is_set) in env_example().items()
        if is_set and name in SETTING_ENVS
    }


def test_env_example_lists_every_setting_and_every_compose_variable() -> None:
    named = set(env_example())
    assert not SETTING_ENVS - named, f"missing from .env.example: {SETTING_ENVS - named}"
    assert not compose_variables() - named, f"missing: {compose_variables() - named}"
    unknown = named - SETTING_ENVS - compose_variables()
    assert not unknown, f"used neither by Tallow nor by Compose: {unknown}"


def test_env_example_values_are_valid_settings() -> None:
    settings = load(environ=_example_settings())
    assert settings.turn_urls and settings.turn_secret and settings.allowed_origins


def _tallow_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in config["services"].items()
        if "packaging/Dockerfile" in service.get("build", {}).get("dockerfile", "")
    }


def _seconds(duration: str) -> float:
    return float(duration.rstrip("s"))


@pytest.mark.parametrize("name", COMPOSE_SETS)
def test_compose_tallow_services_use_real_settings_roles_and_probes(name: str) -> None:
    services = _tallow_services(compose_config(name))
    assert len(services) == 2
    example = _example_settings()
    for service_name, service in services.items():
        environment = service["environment"]
        assert set(environment) <= SETTING_ENVS, service_name
        load(environ=environment)
        command = service["command"]
        assert command[0] == "serve" and role_of(command) in ROLES
        assert service["healthcheck"]["test"][1:3] == ["tallow", "check"]
        port = environment["TALLOW_PORT"]
        assert all(str(p["target"]) == port for p in service.get("ports", []))
        if name != "dev":  # production reads TALLOW_DRAIN_SECONDS from .env
            drain = float(example.get("TALLOW_DRAIN_SECONDS", DEFAULTS["TALLOW_DRAIN_SECONDS"]))
            assert _seconds(service["stop_grace_period"]) > drain


def test_compose_redis_password_reaches_redis_and_tallow() -> None:
    config = compose_config("prod")
    password = env_example()["REDIS_PASSWORD"][0]
    redis_command = config["services"]["redis"]["command"]
    assert redis_command[redis_command.index("--requirepass") + 1] == password
    for service in _tallow_services(config).values():
        assert f":{password}@redis:6379" in service["environment"]["REDIS_URL"]


def _env_names(container: dict[str, Any]) -> list[str]:
    return [entry["name"] for entry in container.get("env", [])]


def _configmap(documents: tuple[dict[str, Any], ...], name: str) -> dict[str, str]:
    (found,) = [doc for doc in of_kind(documents, "ConfigMap") if doc["metadata"]["name"] == name]
    return found["data"]


def _expansions_are_defined(container: dict[str, Any]) -> None:
    """Kubernetes expands $(NAME) only for variables defined earlier in the same container."""
    defined: list[str] = []
    for entry in container.get("env", []):
        for name in EXPANSION.findall(entry.get("value", "")):
            assert name in defined, f"$({name}) in {entry['name']} is not expanded"
        defined.append(entry["name"])
    for arg in container.get("args", []):
        for name in EXPANSION.findall(arg):
            assert name in defined, f"$({name}) in args is not expanded"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_tallow_containers_match_the_code(overlay: str) -> None:
    documents = kustomize(overlay)
    containers = tallow_containers(documents)
    assert {role_of(container["args"]) for _, container in containers} == {"web", "signaling"}
    pods = {
        doc["metadata"]["name"]: doc["spec"]["template"] for doc in of_kind(documents, "Deployment")
    }
    for workload, container in containers:
        role = role_of(container["args"])
        (source,) = container["envFrom"]
        config = _configmap(documents, source["configMapRef"]["name"])
        _expansions_are_defined(container)
        helpers = {name for e in container["env"] for name in EXPANSION.findall(e.get("value", ""))}
        assert set(config) | set(_env_names(container)) <= SETTING_ENVS | helpers
        assert not helpers & SETTING_ENVS
        # The secrets come from tallow-secrets; any value will do to check the rest.
        load(environ={**config, "REDIS_URL": "redis://:x@redis:6379/0", "TURN_SECRET": "x"})

        (port,) = container["ports"]
        assert port["containerPort"] == int(config["TALLOW_PORT"])
        probes = {
            kind: container[f"{kind}Probe"]["httpGet"]
            for kind in ("startup", "liveness", "readiness")
        }
        for probe in probes.values():
            assert route_serves(probe["path"], role) and probe["port"] == port["name"]
        assert ROUTES[probes["liveness"]["path"]].name == "health"
        assert ROUTES[probes["readiness"]["path"]].name == "ready"

        pod = pods[workload]
        annotations = pod["metadata"]["annotations"]
        assert ROUTES[annotations["prometheus.io/path"]].name == "metrics"
        assert route_serves(annotations["prometheus.io/path"], role)
        assert int(annotations["prometheus.io/port"]) == port["containerPort"]
        pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
        grace = float(config["TALLOW_DRAIN_SECONDS"]) + float(pre_stop[-1])
        assert pod["spec"]["terminationGracePeriodSeconds"] > grace


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_pods_are_hardened(overlay: str) -> None:
    documents = kustomize(overlay)
    for doc in [*of_kind(documents, "Deployment"), *of_kind(documents, "StatefulSet")]:
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["limits"] and container["resources"]["requests"]


def _role_behind(documents: tuple[dict[str, Any], ...], service_name: str) -> str:
    (service,) = [d for d in of_kind(documents, "Service") if d["metadata"]["name"] == service_name]
    selector = service["spec"]["selector"]
    for workload, container in tallow_containers(documents):
        (deployment,) = [
            d for d in of_kind(documents, "Deployment") if d["metadata"]["name"] == workload
        ]
        if selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items():
            return role_of(container["args"])
    raise AssertionError(f"no Tallow pods behind Service {service_name}")


def test_ingress_sends_each_path_to_a_role_that_serves_it() -> None:
    documents = kustomize("base")
    (ingress,) = of_kind(documents, "Ingress")
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    for path in paths:
        if path["backend"]["service"]["name"] == "tallow-refused":  # test_kubernetes_meaning
            continue
        role = _role_behind(documents, path["backend"]["service"]["name"])
        if path["pathType"] == "Exact":
            assert route_serves(path["path"], role)
        else:
            assert path["path"] == "/" and static_served_by(role)
            assert route_serves("/api/health", role) and route_serves("/api/ice-servers", role)
    assert {p["path"] for p in paths} == {SIGNALING_PATH, "/api/metrics", "/"}
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
    assert ingress["spec"]["tls"][0]["secretName"]


def test_autoscaling_bounds_and_metrics() -> None:
    documents = kustomize("base")
    bounds = {
        hpa["metadata"]["name"]: (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
        for hpa in of_kind(documents, "HorizontalPodAutoscaler")
    }
    assert bounds == {"tallow-app": (3, 10), "tallow-signaling": (2, 6)}
    for hpa in of_kind(documents, "HorizontalPodAutoscaler"):
        assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}


def test_kubernetes_redis_password_is_applied() -> None:
    documents = kustomize("base")
    (redis,) = of_kind(documents, "StatefulSet")
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    env = {entry["name"]: entry for entry in container["env"]}
    secret_ref = env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    _expansions_are_defined(container)
    for _, tallow in tallow_containers(documents):
        tallow_env = {entry["name"]: entry for entry in tallow["env"]}
        assert tallow_env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == secret_ref
        assert "$(REDIS_PASSWORD)@tallow-redis:6379" in tallow_env["REDIS_URL"]["value"]
    template = yaml.safe_load((K8S_DIR / "base" / "secret.template.yaml").read_text())
    assert secret_ref["name"] == template["metadata"]["name"]
    assert secret_ref["key"] in template["stringData"]


def test_nginx_sends_exactly_the_apps_security_headers() -> None:
    added = {}
    for args in nginx_directives("add_header"):
        name, value = re.fullmatch(r'(\S+)\s+"?(.*?)"?(?:\s+always)?', args).groups()
        added[name.lower()] = value
    hidden = {args.lower() for args in nginx_directives("proxy_hide_header")}
    for name, value in security_headers(https=True):
        assert added[name.decode()] == value.decode()
        assert name.decode() in hidden


def test_nginx_upstreams_and_locations_match_compose_and_routes() -> None:
    config = compose_config("prod")
    services = _tallow_services(config)
    text = NGINX_CONF.read_text()
    upstreams = dict(re.findall(r"set \$(tallow_\w+) (\S+);", text))
    for upstream, needs in (("tallow_web", "/api/health"), ("tallow_signaling", SIGNALING_PATH)):
        host, port = upstreams[upstream].split(":")
        service = services[host]
        assert port == service["environment"]["TALLOW_PORT"]
        assert route_serves(needs, role_of(service["command"]))
    # Names resolved per request (through variables), never once at start.
    assert not re.search(r"^\s*upstream ", text, re.MULTILINE)
    (resolver,) = nginx_directives("resolver")
    assert resolver.startswith("127.0.0.11 ") and "valid=5s" in resolver
    assert all(target.startswith("http://$tallow_") for target in nginx_directives("proxy_pass"))
    assert "$tallow_web" in nginx_directives("proxy_pass")[-1]
    locations = re.findall(r"location (?:= )?(\S+) \{", text)
    assert SIGNALING_PATH in locations and "/api/" in locations
    (asset_pattern,) = re.findall(r'location ~ "(.+)" \{', text)
    assert asset_pattern == _FINGERPRINTED.pattern


def test_nginx_cache_fits_its_tmpfs() -> None:
    (cache,) = re.findall(r"^\s*proxy_cache_path\s+([^;]+);", NGINX_CONF.read_text(), re.MULTILINE)
    assert cache.split()[0].startswith("/tmp/")
    cache_mb = int(re.search(r"max_size=(\d+)m", cache).group(1))
    (tmpfs,) = compose_config("prod")["services"]["nginx"]["tmpfs"]
    tmpfs_mb = int(re.search(r"size=(\d+)m", tmpfs).group(1))
    assert tmpfs.startswith("/tmp:") and cache_mb < 0.75 * tmpfs_mb


@pytest.mark.parametrize("name", ["dev", "base", "prod"])
def test_compose_redis_has_a_memory_ceiling_and_never_evicts(name: str) -> None:
    redis = compose_config(name)["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    ceiling = int(command[command.index("--maxmemory") + 1].removesuffix("mb")) * 1e6
    limit = redis.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory")
    if limit is not None:
        assert ceiling < 0.9 * int(limit)
    if name == "dev":  # the seed's promise: dev Redis data survives a restart
        assert any(volume["target"] == "/data" for volume in redis["volumes"])


def test_dockerfile_copies_no_secrets_into_the_image() -> None:
    (production, _) = DOCKERFILES
    copies = [args for kind, args in dockerfile_instructions(production) if kind == "COPY"]
    assert not [args for args in copies if args.split()[0] == "."], copies
    ignored = (production.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert {"certs", "**/.env", "**/.env.*", "**/*.key"} <= set(ignored)
    # The default TLS_CERT_DIR is inside the build context: it must be ignored.
    assert env_example()["TLS_CERT_DIR"][0] == "../../certs"


def test_dockerfiles_use_real_settings_port_and_check() -> None:
    runtime_env = {"SHIV_ROOT", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PATH"}
    for dockerfile in DOCKERFILES:
        instructions = dockerfile_instructions(dockerfile)
        env = dict(
            re.findall(
                r"([A-Z][A-Z0-9_]*)=(\S+)", " ".join(a for i, a in instructions if i == "ENV")
            )
        )
        assert set(env) <= SETTING_ENVS | runtime_env, dockerfile.name
        load(environ={name: value for name, value in env.items() if name in SETTING_ENVS})
        assert [a for i, a in instructions if i == "EXPOSE"] == [env["TALLOW_PORT"]]
        (healthcheck,) = [a for i, a in instructions if i == "HEALTHCHECK"]
        assert healthcheck.endswith('CMD ["tallow", "check"]')
        assert [a for i, a in instructions if i == "USER"] == ["10001:10001"]


def test_every_path_the_artifacts_name_is_a_route() -> None:
    files = [*SCRIPTS, *DOCKERFILES, NGINX_CONF, ENV_EXAMPLE, ROOT / "docs" / "DEVOPS.md"]
    files += [
        *K8S_DIR.rglob("*.yaml"),
        *K8S_DIR.rglob("*.md"),
        *(ROOT / "manifests").rglob("*.yml"),
    ]
    pattern = re.compile(r"(?<![\w./-])(/api/[a-z-]+|/health|/signaling)\b")
    named = {path for file in files for path in pattern.findall(file.read_text())}
    assert {"/api/health", "/api/ready", "/api/metrics", SIGNALING_PATH} <= named
    assert named <= set(ROUTES)


def test_dashboard_and_alert_rules_use_only_exported_series() -> None:
    import json

    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = yaml.safe_load(ALERT_RULES.read_text())["spec"]["groups"][0]["rules"]
    expressions += [rule["expr"] for rule in rules]
    used = set()
    for expr in expressions:
        names = series_in(expr)
        assert names and names <= SERIES, f"{expr}: {names - SERIES}"
        used |= names
    # The dashboard covers the signaling and broker health, not just HTTP.
    assert {"tallow_connections_open", "tallow_broker_up", "tallow_ready"} <= used


def _coturn_flags(command: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in command if arg.startswith("--") and "=" in arg)


def test_coturn_ports_match_compose_and_turn_urls() -> None:
    conf = dict(
        line.split("=", 1)
        for line in COTURN_CONF.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    # Production: host networking, nothing to publish, and room for thousands of relays.
    coturn = compose_config("prod")["services"]["coturn"]
    assert coturn["network_mode"] == "host" and "ports" not in coturn
    assert int(conf["max-port"]) - int(conf["min-port"]) + 1 >= 10000
    stun = coturn["healthcheck"]["test"]
    assert (
        stun[1] == "turnutils_stunclient" and stun[stun.index("-p") + 1] == conf["listening-port"]
    )
    # Development publishes its (smaller) relay range.
    dev = compose_config("dev")["services"]["coturn"]
    flags = {**conf, **_coturn_flags(dev["command"])}
    published = {p["target"] for p in dev["ports"]}
    assert int(flags["listening-port"]) in published
    relay = {p["target"] for p in dev["ports"] if p["protocol"] == "udp"}
    assert set(range(int(flags["min-port"]), int(flags["max-port"]) + 1)) <= relay
    assert dev["healthcheck"]["test"] == stun
    for url in env_example()["TURN_URLS"][0].split(","):
        assert f":{conf['listening-port']}?" in url
    assert "use-auth-secret" in COTURN_CONF.read_text().split()
