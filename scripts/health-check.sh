#!/usr/bin/env bash
# Check a running Tallow: liveness, readiness, metrics and security headers. Exit 0 when healthy.
set -euo pipefail
# shellcheck source=scripts/deploy-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/deploy-lib.sh"

usage() {
    cat <<USAGE
Usage: scripts/health-check.sh [dev|prod|k8s|URL] [--insecure] [--namespace NS] [--timeout S]

Checks GET /api/health (alive), /api/ready (can take traffic), /api/metrics (Prometheus text;
sends METRICS_TOKEN from the environment when set) and the Content-Security-Policy header.

  dev            http://localhost:3000 (scripts/deploy-dev.sh)
  prod           https://localhost, through nginx (scripts/deploy-prod.sh); TALLOW_URL overrides
  k8s            https://HOST of the Ingress "tallow" in namespace NS (default tallow)
  URL            any base URL, for example http://127.0.0.1:3000 (the default)
  --insecure     accept a self-signed certificate
  --namespace NS namespace of the k8s target
  --timeout S    seconds per request (default 5)
  -h, --help     this help

Exit status: 0 healthy, 1 a check failed, 2 usage error.
USAGE
}

target='http://127.0.0.1:3000' namespace=tallow timeout=5 curl_tls=()
while (($#)); do
    case "$1" in
    --insecure) curl_tls=(--insecure) ;;
    --namespace)
        namespace="${2:?--namespace needs a name}"
        shift
        ;;
    --timeout)
        timeout="${2:?--timeout needs seconds}"
        shift
        ;;
    -h | --help) show_help ;;
    -*) bad_usage ;;
    *) target="$1" ;;
    esac
    shift
done

need curl "used for the HTTP checks"
case "$target" in
dev) base='http://localhost:3000' ;;
prod) base="${TALLOW_URL:-https://localhost}" ;;
k8s)
    need kubectl "needed to find the Ingress host"
    host="$(kubectl -n "$namespace" get ingress tallow -o jsonpath='{.spec.rules[0].host}')"
    base="https://$host"
    ;;
http://* | https://*) base="${target%/}" ;;
*) bad_usage ;;
esac

info "checking $base"
failures=0
headers="$(mktemp)"
trap 'rm -f "$headers"' EXIT

# check NAME PATH PATTERN [CURL ARGS...]: GET PATH, expect HTTP 200 and PATTERN in the body.
check() {
    local name="$1" path="$2" pattern="$3" body status
    shift 3
    body="$(curl -sS "${curl_tls[@]}" --max-time "$timeout" -D "$headers" -w '\n%{http_code}' \
        "$@" "$base$path" 2>&1)" || true
    status="${body##*$'\n'}"
    if [[ "$status" == 200 ]] && grep -q -- "$pattern" <<<"$body"; then
        ok "$name ($path)"
    else
        fail "$name ($path): HTTP ${status:-none}"
        failures=$((failures + 1))
    fi
}

check liveness /api/health '"status"'
if grep -qi '^content-security-policy:' "$headers"; then
    ok "security headers (Content-Security-Policy)"
else
    fail "security headers: no Content-Security-Policy"
    failures=$((failures + 1))
fi
check readiness /api/ready '"ready"'
metrics_auth=()
[[ -n "${METRICS_TOKEN:-}" ]] && metrics_auth=(-H "Authorization: Bearer $METRICS_TOKEN")
check metrics /api/metrics '^tallow_up ' "${metrics_auth[@]}"

if ((failures)); then
    fail "$failures check(s) failed for $base"
    exit 1
fi
ok "$base is healthy"
