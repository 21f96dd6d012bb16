#!/usr/bin/env bash
# Check a running Tallow: liveness, readiness, metrics and security headers. Exit 0 when healthy.
set -euo pipefail
# shellcheck source=scripts/deploy-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/deploy-lib.sh"

usage() {
    cat <<USAGE
Usage: scripts/health-check.sh [dev|prod|k8s|URL] [options]

Checks GET /api/health (alive), /api/ready (can take traffic), the Content-Security-Policy
header and /api/metrics: on a replica, Prometheus text (METRICS_TOKEN from the environment is
sent as a bearer token when set); through the public edge (nginx, the Ingress), that the edge
refuses it, because metrics must not be public.

  dev               http://localhost:3000 (scripts/deploy-dev.sh)
  prod              the Compose production stack through nginx: https://HOST:HTTPS_PORT, with
                    HOST from ALLOWED_ORIGINS and HTTPS_PORT from .env, connecting to 127.0.0.1
                    (TALLOW_URL overrides the URL); an edge
  k8s               https://HOST of the Ingress "tallow" in namespace NS; an edge
  URL               any base URL, for example http://127.0.0.1:3000 (the default)
  --edge            URL is a public edge: expect /api/metrics to be refused
  --connect-to ADDR connect to ADDR instead of resolving the URL's host name; the certificate
                    is still checked against the host name (curl --resolve)
  --cacert FILE     trust this CA certificate (a private CA)
  --insecure        accept any certificate (staging certificates, self-signed)
  --namespace NS    namespace of the k8s target (default tallow)
  --timeout S       seconds per request (default 5)
  --wait S          retry failing checks for up to S seconds (a deployment still starting,
                    a certificate still being issued); default 0
  -h, --help        this help

Exit status: 0 healthy, 1 a check failed, 2 usage error.
USAGE
}

target='http://127.0.0.1:3000' namespace=tallow timeout=5 wait=0 edge=0 connect_to=''
curl_tls=()
while (($#)); do
    case "$1" in
    --insecure) curl_tls=(--insecure) ;;
    --edge) edge=1 ;;
    --cacert)
        curl_tls=(--cacert "${2:?--cacert needs a file}")
        shift
        ;;
    --connect-to)
        connect_to="${2:?--connect-to needs an address}"
        shift
        ;;
    --namespace)
        namespace="${2:?--namespace needs a name}"
        shift
        ;;
    --timeout)
        timeout="${2:?--timeout needs seconds}"
        shift
        ;;
    --wait)
        wait="${2:?--wait needs seconds}"
        shift
        ;;
    -h | --help) show_help ;;
    -*) bad_usage ;;
    *) target="$1" ;;
    esac
    shift
done
[[ "$wait" =~ ^[0-9]+$ ]] || die "--wait needs a whole number of seconds, not '$wait'"

need curl "used for the HTTP checks"
case "$target" in
dev) base='http://localhost:3000' ;;
prod | production)
    env_file="$REPO_ROOT/.env"
    if [[ -n "${TALLOW_URL:-}" ]]; then
        base="$TALLOW_URL"
    else
        [[ -f "$env_file" ]] || die "$env_file not found (or set TALLOW_URL)"
        host="$(origin_host "$(env_value "$env_file" ALLOWED_ORIGINS)")"
        [[ -n "$host" ]] || die "ALLOWED_ORIGINS in $env_file names no host (or set TALLOW_URL)"
        port="$(env_value "$env_file" HTTPS_PORT)"
        base="https://$host:${port:-443}"
        connect_to="${connect_to:-127.0.0.1}"
    fi
    edge=1
    ;;
k8s)
    need kubectl "needed to find the Ingress host"
    host="$(kubectl -n "$namespace" get ingress tallow -o jsonpath='{.spec.rules[0].host}')"
    base="https://$host"
    edge=1
    ;;
http://* | https://*) base="${target%/}" ;;
*) bad_usage ;;
esac

curl_args=(-sS --max-time "$timeout" ${curl_tls[@]+"${curl_tls[@]}"})
if [[ -n "$connect_to" ]]; then
    # The URL's own host name and port, pinned to one address: TLS still checks the name.
    authority="${base#*://}"
    authority="${authority%%/*}"
    url_host="${authority%:*}" url_port="${authority##*:}"
    if [[ "$authority" != *:* ]]; then
        url_host="$authority" url_port=443
        [[ "$base" == http://* ]] && url_port=80
    fi
    curl_args+=(--resolve "$url_host:$url_port:$connect_to")
fi

info "checking $base${connect_to:+ (at $connect_to)}"
headers="$(mktemp)"
trap 'rm -f "$headers"' EXIT

# fetch PATH [CURL ARGS...]: sets $status and $body of one GET.
fetch() {
    local path="$1"
    shift
    body="$(curl "${curl_args[@]}" -D "$headers" -w '\n%{http_code}' "$@" "$base$path" 2>&1)" || true
    status="${body##*$'\n'}"
}

# Each check returns 0 when it passes and leaves its verdict in $verdict.
check_liveness() {
    fetch /api/health
    verdict="liveness (/api/health): HTTP ${status:-none}"
    [[ "$status" == 200 ]] && grep -q '"status"' <<<"$body"
}
check_headers() {
    verdict="security headers (Content-Security-Policy)"
    fetch /api/health && grep -qi '^content-security-policy:' "$headers"
}
check_readiness() {
    fetch /api/ready
    verdict="readiness (/api/ready): HTTP ${status:-none}"
    [[ "$status" == 200 ]] && grep -q '"ready"' <<<"$body"
}
check_metrics() {
    local auth=()
    [[ -n "${METRICS_TOKEN:-}" ]] && auth=(-H "Authorization: Bearer $METRICS_TOKEN")
    fetch /api/metrics ${auth[@]+"${auth[@]}"}
    if ((edge)); then
        verdict="metrics not public (/api/metrics refused at the edge): HTTP ${status:-none}"
        [[ "$status" =~ ^(403|404|503)$ ]]
    else
        verdict="metrics (/api/metrics): HTTP ${status:-none}"
        [[ "$status" == 200 ]] && grep -q '^tallow_up ' <<<"$body"
    fi
}

deadline=$((SECONDS + wait))
failures=0
for name in liveness headers readiness metrics; do
    until "check_$name"; do
        if ((SECONDS >= deadline)); then
            fail "$verdict"
            failures=$((failures + 1))
            continue 2
        fi
        sleep 2
    done
    ok "$verdict"
done

if ((failures)); then
    fail "$failures check(s) failed for $base"
    exit 1
fi
ok "$base is healthy"
