#!/usr/bin/env bash
# Apply a Kubernetes overlay (dev/staging or prod/production), wait for the rollout, advise a
# rollback on failure.
set -euo pipefail
# shellcheck source=scripts/deploy-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/deploy-lib.sh"

usage() {
    cat <<USAGE
Usage: scripts/deploy-k8s.sh ENVIRONMENT [options]

Applies manifests/k8s/overlays/ENVIRONMENT with kubectl apply -k to the cluster of the current
kubectl context, then waits for the Redis StatefulSet and both Tallow Deployments to roll out
and checks the site through its Ingress. The Secret tallow-secrets must exist first, or be
given with --secret-file (see manifests/k8s/README.md); its keys are checked either way.

  ENVIRONMENT         prod or production (overlays/prod), dev or staging (overlays/dev)
  --render            render and check offline (no cluster): print the manifests to stdout
  --dry-run           render and validate server-side (kubectl apply --dry-run=server);
                      client-side while the namespace does not exist yet
  --namespace NS      deploy into NS instead of the overlay's namespace (tallow, tallow-dev)
  --secret-file FILE  a filled-in copy of base/secret.template.yaml: checked, then applied
  --insecure          the health check accepts a certificate that does not verify (staging)
  --timeout DURATION  how long to wait for each rollout (default: 300s)
  --wait S            how long the health check retries (default 300: a first deploy waits
                      for its certificate)
  -h, --help          this help
USAGE
}

environment='' mode=apply namespace='' timeout=300s secret_file='' check=(--wait 300)
while (($#)); do
    case "$1" in
    prod | production) environment=prod ;;
    dev | staging) environment=dev ;;
    --render) mode=render ;;
    --dry-run) mode=dry-run ;;
    --insecure) check+=(--insecure) ;;
    --namespace)
        namespace="${2:?--namespace needs a name}"
        shift
        ;;
    --secret-file)
        secret_file="${2:?--secret-file needs a file}"
        shift
        ;;
    --timeout)
        timeout="${2:?--timeout needs a duration}"
        shift
        ;;
    --wait)
        check+=(--wait "${2:?--wait needs seconds}")
        shift
        ;;
    -h | --help) show_help ;;
    *) bad_usage ;;
    esac
    shift
done
[[ -n "$environment" ]] || bad_usage
need kubectl "https://kubernetes.io/docs/tasks/tools/"

overlay="$K8S_DIR/overlays/$environment"
overlay_namespace="$(sed -n 's/^namespace: //p' "$overlay/kustomization.yaml")"
namespace="${namespace:-$overlay_namespace}"
if [[ "$namespace" != "$overlay_namespace" ]]; then
    # Another namespace: a kustomization on top of the overlay that moves every object there
    # (the Namespace object too). Kustomize wants it below the manifests, beside the overlays.
    moved="$(mktemp -d "$K8S_DIR/.namespace-XXXXXX")"
    trap 'rm -rf "$moved"' EXIT
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n' >"$moved/kustomization.yaml"
    printf 'namespace: %s\nresources:\n  - ../overlays/%s\n' "$namespace" "$environment" \
        >>"$moved/kustomization.yaml"
    overlay="$moved"
fi

REQUIRED_SECRETS=(REDIS_PASSWORD TURN_SECRET)

# check_secrets SOURCE: stdin has KEY=VALUE lines of tallow-secrets; refuse what cannot work.
check_secrets() {
    local values key value
    values="$(cat)"
    for key in "${REQUIRED_SECRETS[@]}"; do
        grep -q "^$key=." <<<"$values" || die "$1: tallow-secrets has no $key"
    done
    while IFS='=' read -r key value; do
        [[ -n "$key" ]] || continue
        [[ "$value" != CHANGE-ME ]] || die "$1: $key in tallow-secrets is still CHANGE-ME"
        if [[ "$key" == REDIS_PASSWORD && ! "$value" =~ ^[A-Za-z0-9._~-]+$ ]]; then
            die "$1: REDIS_PASSWORD must be URL-safe (it goes into REDIS_URL): openssl rand -hex 32"
        fi
    done <<<"$values"
    ok "secret tallow-secrets ($1): ${REQUIRED_SECRETS[*]} set, no placeholders" >&2
}

# secret_file_values FILE: KEY=VALUE of a Secret manifest's stringData (and decoded data).
secret_file_values() {
    awk '
        /^[^ #]/ { section = $1 }
        section ~ /^(stringData|data):$/ && /^  [A-Za-z0-9_.-]+:/ {
            key = $1; sub(/:$/, "", key)
            value = $0; sub(/^  [^:]+: */, "", value); gsub(/^["'\'']|["'\'']$/, "", value)
            print (section == "data:" ? "b64:" : "") key "=" value
        }' "$1" | while IFS='=' read -r key value; do
        if [[ "$key" == b64:* ]]; then
            printf '%s=%s\n' "${key#b64:}" "$(printf '%s' "$value" | base64 -d)"
        else
            printf '%s=%s\n' "$key" "$value"
        fi
    done
}

if [[ -n "$secret_file" ]]; then
    [[ -r "$secret_file" ]] || die "$secret_file cannot be read"
    secret_file_values "$secret_file" | check_secrets "$secret_file"
fi

if [[ "$mode" == render ]]; then
    kubectl kustomize "$overlay"
    ok "rendered $environment for namespace $namespace; nothing applied" >&2
    exit 0
fi

info "context: $(kubectl config current-context), namespace: $namespace, overlay: $environment"
namespace_exists=0
kubectl get namespace "$namespace" >/dev/null 2>&1 && namespace_exists=1

if [[ "$mode" == dry-run ]]; then
    if ((namespace_exists)); then
        kubectl apply -k "$overlay" --dry-run=server
        ok "server-side dry run passed; nothing changed"
    else
        # The server refuses objects in a namespace that does not exist yet.
        warn "namespace $namespace does not exist yet: client-side dry run"
        kubectl apply -k "$overlay" --dry-run=client
        ok "client-side dry run passed; nothing changed"
    fi
    exit 0
fi

((namespace_exists)) || kubectl create namespace "$namespace"
if [[ -n "$secret_file" ]]; then
    kubectl -n "$namespace" apply -f "$secret_file"
else
    # shellcheck disable=SC2016  # a Go template, not shell
    template='{{range $k, $v := .data}}{{$k}}={{$v | base64decode}}{{"\n"}}{{end}}'
    values="$(kubectl -n "$namespace" get secret tallow-secrets -o go-template="$template" 2>/dev/null)" ||
        die "Secret tallow-secrets is missing in $namespace (see manifests/k8s/README.md)"
    check_secrets "namespace $namespace" <<<"$values"
fi

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
"$REPO_ROOT/scripts/health-check.sh" k8s --namespace "$namespace" "${check[@]}"
