#!/usr/bin/env bash
# Apply a Kubernetes overlay (dev or prod), wait for the rollout, advise a rollback on failure.
set -euo pipefail
# shellcheck source=scripts/deploy-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/deploy-lib.sh"

usage() {
    cat <<USAGE
Usage: scripts/deploy-k8s.sh ENVIRONMENT [--dry-run] [--namespace NS] [--timeout DURATION]

Applies manifests/k8s/overlays/ENVIRONMENT (dev or prod) with kubectl apply -k to the cluster
of the current kubectl context, then waits for the Redis StatefulSet and both Tallow
Deployments to roll out. The Secret tallow-secrets must exist first (see
manifests/k8s/README.md).

  ENVIRONMENT        dev or prod
  --dry-run          render and validate server-side (kubectl apply --dry-run=server), change nothing
  --namespace NS     the overlay's namespace (default: tallow-dev for dev, tallow for prod)
  --timeout DURATION how long to wait for each rollout (default: 300s)
  -h, --help         this help
USAGE
}

environment='' dry_run=0 namespace='' timeout=300s
while (($#)); do
    case "$1" in
    dev | prod) environment="$1" ;;
    --dry-run) dry_run=1 ;;
    --namespace)
        namespace="${2:?--namespace needs a name}"
        shift
        ;;
    --timeout)
        timeout="${2:?--timeout needs a duration}"
        shift
        ;;
    -h | --help) show_help ;;
    *) bad_usage ;;
    esac
    shift
done
[[ -n "$environment" ]] || bad_usage
if [[ -z "$namespace" ]]; then
    namespace=tallow
    [[ "$environment" == dev ]] && namespace=tallow-dev
fi

need kubectl "https://kubernetes.io/docs/tasks/tools/"
overlay="$K8S_DIR/overlays/$environment"
info "context: $(kubectl config current-context), namespace: $namespace, overlay: $environment"

if ((dry_run)); then
    kubectl apply -k "$overlay" --dry-run=server
    ok "server-side dry run passed; nothing changed"
    exit 0
fi

if ! kubectl get namespace "$namespace" >/dev/null 2>&1; then
    kubectl create namespace "$namespace"
fi
kubectl -n "$namespace" get secret tallow-secrets >/dev/null 2>&1 ||
    die "Secret tallow-secrets is missing in $namespace (see manifests/k8s/README.md)"

kubectl apply -k "$overlay"

rollout_failed() {
    fail "rollout of $1 did not finish within $timeout"
    cat <<ADVICE
What now:
  kubectl -n $namespace describe $1
  kubectl -n $namespace logs $1 --all-containers --tail=100
  kubectl -n $namespace rollout history $1
Roll back to the previous revision:
  kubectl -n $namespace rollout undo $1
ADVICE
    exit 1
}

for workload in statefulset/tallow-redis deployment/tallow-app deployment/tallow-signaling; do
    info "waiting for $workload"
    kubectl -n "$namespace" rollout status "$workload" --timeout="$timeout" ||
        rollout_failed "$workload"
done
ok "deployed $environment to $namespace"
"$REPO_ROOT/scripts/health-check.sh" k8s --namespace "$namespace"
