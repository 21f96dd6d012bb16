"""What the rendered Kubernetes manifests mean, beyond their schema: images that follow the
overlays, replica counts left to the HPAs, selectors that select, traffic the NetworkPolicies
admit, metrics kept off the Ingress and found by the PodMonitor, Redis that never evicts."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tallow.http.routes import ROUTES
from tests.deployment.artifacts import (
    K8S_DIR,
    KUSTOMIZATIONS,
    kustomize,
    of_kind,
    role_of,
    tallow_containers,
)
from tests.deployment.tools import assert_succeeds, run, tool

OVERLAYS = ("overlays/dev", "overlays/prod")
APPLIED = ("base", *OVERLAYS)
Documents = tuple[dict[str, Any], ...]
INGRESS_NAMESPACE = {"kubernetes.io/metadata.name": "ingress-nginx"}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and the usual matchExpressions)."""
    if not selector:
        return True
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if operator == "Exists" and key not in labels:
            return False
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
    return True


def _workloads(documents: Documents) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] in ("Deployment", "StatefulSet", "CronJob")]


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    template: dict[str, Any] = (
        spec["jobTemplate"]["spec"]["template"] if "jobTemplate" in spec else spec["template"]
    )
    return template


def _selected(documents: Documents, selector: dict[str, Any]) -> set[str]:
    return {
        w["metadata"]["name"]
        for w in _workloads(documents)
        if _selects(selector, _pod(w)["metadata"]["labels"])
    }


def _named(documents: Documents, kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in of_kind(documents, kind) if d["metadata"]["name"] == name]
    return found


def _render_copy(tmp_path: Path, overlay: str, new_tag: str) -> Documents:
    """Render a copy of the manifests in which the overlay's image tag is ``new_tag``."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, copy)
    path = copy / overlay / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text())
    (image,) = kustomization["images"]
    image["newTag"] = new_tag
    path.write_text(yaml.safe_dump(kustomization))
    result = run([tool("kubectl"), "kustomize", str(copy / overlay)])
    assert_succeeds(result)
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_image_is_the_rendered_image(overlay: str, tmp_path: Path) -> None:
    (image,) = yaml.safe_load((K8S_DIR / overlay / "kustomization.yaml").read_text())["images"]
    wanted = f"{image['newName']}:{image['newTag']}"
    rendered = {container["image"] for _, container in tallow_containers(kustomize(overlay))}
    assert rendered == {wanted}
    # An upgrade (a new tag in the overlay) really changes what runs.
    changed = _render_copy(tmp_path, overlay, "9.9.9-upgrade")
    assert {c["image"] for _, c in tallow_containers(changed)} == {
        f"{image['newName']}:9.9.9-upgrade"
    }


@pytest.mark.parametrize("directory", APPLIED)
def test_no_deployment_under_an_hpa_sets_replicas(directory: str) -> None:
    documents = kustomize(directory)
    hpas = of_kind(documents, "HorizontalPodAutoscaler")
    assert hpas
    for hpa in hpas:
        target = hpa["spec"]["scaleTargetRef"]
        deployment = _named(documents, target["kind"], target["name"])
        assert "replicas" not in deployment["spec"], target["name"]


@pytest.mark.parametrize("directory", APPLIED)
def test_services_pdbs_and_hpas_select_their_own_workload(directory: str) -> None:
    documents = kustomize(directory)
    expected = {
        "tallow-app": {"tallow-app"},
        "tallow-signaling": {"tallow-signaling"},
        "tallow-redis": {"tallow-redis"},
        "tallow-refused": set(),  # the Ingress's refusal: no pods, ever
    }
    services = {s["metadata"]["name"]: s for s in of_kind(documents, "Service")}
    assert set(services) == set(expected)
    workloads = {w["metadata"]["name"]: w for w in _workloads(documents)}
    for name, service in services.items():
        selector = service["spec"].get("selector")
        if not expected[name]:
            assert selector is None, name
            continue
        assert _selected(documents, {"matchLabels": selector}) == expected[name], name
        (workload,) = [workloads[w] for w in expected[name]]
        ports = {p["name"] for c in _pod(workload)["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports, name
    for pdb in of_kind(documents, "PodDisruptionBudget"):
        assert _selected(documents, pdb["spec"]["selector"]) == {pdb["metadata"]["name"]}
    for hpa in of_kind(documents, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] == hpa["metadata"]["name"]
        assert hpa["metadata"]["name"] in workloads


def _admits(policy: dict[str, Any], source_labels: dict[str, str], port: int) -> bool:
    """Whether an Ingress NetworkPolicy admits pods with these labels (same namespace)."""
    for rule in policy["spec"].get("ingress", []):
        ports = {p["port"] for p in rule.get("ports", [])}
        peers = rule.get("from", [])
        same_namespace = [p for p in peers if "namespaceSelector" not in p]
        if port in ports and any(_selects(p["podSelector"], source_labels) for p in same_namespace):
            return True
    return False


def _egress_allows(policy: dict[str, Any], target_labels: dict[str, str], port: int) -> bool:
    for rule in policy["spec"].get("egress", []):
        ports = {p["port"] for p in rule.get("ports", [])}
        peers = [p for p in rule.get("to", []) if "namespaceSelector" not in p]
        if port in ports and any(_selects(p["podSelector"], target_labels) for p in peers):
            return True
    return False


@pytest.mark.parametrize("directory", APPLIED)
def test_network_policies_admit_exactly_the_needed_paths(directory: str) -> None:
    documents = kustomize(directory)
    policies = of_kind(documents, "NetworkPolicy")
    labels = {w["metadata"]["name"]: _pod(w)["metadata"]["labels"] for w in _workloads(documents)}
    for policy in policies:  # every policy is about pods that exist (or every pod)
        selector = policy["spec"]["podSelector"]
        solver = any(e["key"].startswith("acme.") for e in selector.get("matchExpressions", []))
        assert solver or _selected(documents, selector), policy["metadata"]["name"]

    def allowed(source: str, target: str, port: int) -> bool:
        egress = [p for p in policies if "Egress" in p["spec"]["policyTypes"]]
        ingress = [p for p in policies if "Ingress" in p["spec"]["policyTypes"]]
        out = any(
            _selects(p["spec"]["podSelector"], labels[source])
            and _egress_allows(p, labels[target], port)
            for p in egress
        )
        into = any(
            _selects(p["spec"]["podSelector"], labels[target]) and _admits(p, labels[source], port)
            for p in ingress
        )
        return out and into

    redis = _named(documents, "Service", "tallow-redis")["spec"]["ports"][0]["port"]
    for tallow in ("tallow-app", "tallow-signaling", "tallow-redis-backup"):
        assert allowed(tallow, "tallow-redis", redis), tallow
    assert not allowed("tallow-redis", "tallow-app", 3000)
    assert not allowed("tallow-redis-backup", "tallow-app", 3000)


def test_the_acme_http01_solver_is_admitted_and_its_issuers_exist() -> None:
    issuers = {d["metadata"]["name"]: d for d in kustomize("cert-manager")}
    for overlay in OVERLAYS:
        documents = kustomize(overlay)
        (ingress,) = of_kind(documents, "Ingress")
        issuer = issuers[ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]]
        (solver,) = issuer["spec"]["acme"]["solvers"]
        assert (
            solver["http01"]["ingress"]["ingressClassName"] == ingress["spec"]["ingressClassName"]
        )
        # cert-manager labels its solver pods like this and listens on 8089.
        solver_pod = {"acme.cert-manager.io/http01-solver": "true"}
        admitted = [
            rule
            for policy in of_kind(documents, "NetworkPolicy")
            if _selects(policy["spec"]["podSelector"], solver_pod)
            for rule in policy["spec"].get("ingress", [])
            if {p["port"] for p in rule["ports"]} == {8089}
        ]
        peers = [peer for rule in admitted for peer in rule["from"]]
        assert {"namespaceSelector": {"matchLabels": INGRESS_NAMESPACE}} in peers
    assert {"letsencrypt-prod", "letsencrypt-staging"} <= set(issuers)


def _ingress_backend(ingress: dict[str, Any], path: str) -> str:
    """The Service an Ingress sends ``path`` to: an Exact match, else the longest Prefix."""
    rules = ingress["spec"]["rules"][0]["http"]["paths"]
    exact = [r for r in rules if r["pathType"] == "Exact" and r["path"] == path]
    prefixes = [
        r
        for r in rules
        if r["pathType"] == "Prefix"
        and (r["path"] == "/" or path == r["path"] or path.startswith(r["path"].rstrip("/") + "/"))
    ]
    (rule,) = exact or sorted(prefixes, key=lambda r: len(r["path"]))[-1:]
    service: str = rule["backend"]["service"]["name"]
    return service


@pytest.mark.parametrize("directory", APPLIED)
def test_metrics_are_not_routed_to_the_internet(directory: str) -> None:
    documents = kustomize(directory)
    (ingress,) = of_kind(documents, "Ingress")
    (metrics_path,) = [path for path, route in ROUTES.items() if route.name == "metrics"]
    refused = _named(documents, "Service", _ingress_backend(ingress, metrics_path))
    assert "selector" not in refused["spec"]
    assert not [e for e in of_kind(documents, "Endpoints") + of_kind(documents, "EndpointSlice")]
    # Everything else still reaches the pods.
    assert _ingress_backend(ingress, "/api/health") == "tallow-app"
    assert _ingress_backend(ingress, "/signaling") == "tallow-signaling"


def test_the_podmonitor_scrapes_a_port_and_path_every_tallow_pod_has() -> None:
    base = kustomize("base")
    (monitor,) = of_kind(kustomize("monitoring"), "PodMonitor")
    assert _selected(base, monitor["spec"]["selector"]) == {"tallow-app", "tallow-signaling"}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert ROUTES[endpoint["path"]].name == "metrics"
    token = endpoint["authorization"]["credentials"]
    assert token["optional"] is True
    for _, container in tallow_containers(base):
        assert endpoint["port"] in {port["name"] for port in container["ports"]}
        assert role_of(container["args"]) in ROUTES[endpoint["path"]].roles
        env = {entry["name"]: entry for entry in container["env"]}
        reference = env["METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert (reference["name"], reference["key"]) == (token["name"], token["key"])


def _megabytes(quantity: str) -> float:
    units = {"mb": 1e6, "Mi": 2**20, "Gi": 2**30, "gb": 1e9}
    for unit, size in units.items():
        if quantity.endswith(unit):
            return float(quantity[: -len(unit)]) * size / 1e6
    raise AssertionError(quantity)


@pytest.mark.parametrize("directory", APPLIED)
def test_redis_has_a_memory_ceiling_and_never_evicts(directory: str) -> None:
    documents = kustomize(directory)
    (container,) = _pod(_named(documents, "StatefulSet", "tallow-redis"))["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    ceiling = _megabytes(args[args.index("--maxmemory") + 1])
    assert ceiling < 0.9 * _megabytes(container["resources"]["limits"]["memory"])


def test_the_backup_cronjob_runs_the_shipped_script_against_the_redis_service() -> None:
    documents = kustomize("overlays/prod")
    (cronjob,) = of_kind(documents, "CronJob")
    pod = _pod(cronjob)["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    command = container["command"]
    script_folder, script = command[1].rsplit("/", 1)
    config = _named(documents, "ConfigMap", volumes[mounts[script_folder]]["configMap"]["name"])
    assert config["data"][script] == (K8S_DIR / "base" / "redis-backup.sh").read_text()
    assert command[2:4] == ["backup", "/backup"] and "/backup" in mounts
    claim = volumes[mounts["/backup"]]["persistentVolumeClaim"]["claimName"]
    assert _named(documents, "PersistentVolumeClaim", claim)
    env = {entry["name"]: entry for entry in container["env"]}
    assert env["REDIS_HOST"]["value"] == "tallow-redis"
    assert env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]["key"] == "REDIS_PASSWORD"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_every_kustomization_renders(directory: str) -> None:
    assert kustomize(directory)


def test_the_loadbalancer_component_serves_everything_from_the_signaling_pods(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, copy)
    (copy / "with-lb").mkdir()
    (copy / "with-lb" / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["../overlays/prod"],
                "components": ["../components/loadbalancer"],
            }
        )
    )
    result = run([tool("kubectl"), "kustomize", str(copy / "with-lb")])
    assert_succeeds(result)
    documents = tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)
    assert not of_kind(documents, "Ingress")
    public = _named(documents, "Service", "tallow-public")["spec"]
    assert public["type"] == "LoadBalancer" and public["externalTrafficPolicy"] == "Local"
    (behind,) = _selected(documents, {"matchLabels": public["selector"]})
    (container,) = [c for name, c in tallow_containers(documents) if name == behind]
    assert role_of(container["args"]) == "all"
    # Facing the internet without an edge: metrics need the token, which must exist.
    token = {e["name"]: e for e in container["env"]}["METRICS_TOKEN"]["valueFrom"]
    assert token["secretKeyRef"]["optional"] is False
    # Nothing left that would point at the removed web role.
    assert {d["metadata"]["name"] for d in _workloads(documents)} == {
        "tallow-signaling",
        "tallow-redis",
        "tallow-redis-backup",
    }
    for service in of_kind(documents, "Service"):
        assert _selected(documents, {"matchLabels": service["spec"]["selector"]})
    for pdb in of_kind(documents, "PodDisruptionBudget"):
        assert _selected(documents, pdb["spec"]["selector"])
    for hpa in of_kind(documents, "HorizontalPodAutoscaler"):
        assert _named(documents, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
    pod_labels = _pod(_named(documents, "Deployment", behind))["metadata"]["labels"]
    admitted = [
        rule
        for policy in of_kind(documents, "NetworkPolicy")
        if _selects(policy["spec"]["podSelector"], pod_labels)
        for rule in policy["spec"].get("ingress", [])
        if {"ipBlock": {"cidr": "0.0.0.0/0"}} in rule["from"]
    ]
    assert [p["port"] for rule in admitted for p in rule["ports"]] == [
        port["containerPort"] for port in container["ports"]
    ]
