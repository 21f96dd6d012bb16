#!/usr/bin/env bash
# Deploy the production Compose stack (nginx + TLS, replicas, Redis with AOF) on this host.
set -euo pipefail
# shellcheck source=scripts/deploy-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/deploy-lib.sh"

usage() {
    cat <<USAGE
Usage: scripts/deploy-prod.sh [--dry-run] [--build] [--insecure] [--wait S] [--down]

Validates and starts manifests/compose/docker-compose.yml + docker-compose.prod.yml with the
variables from .env at the repository root (start from .env.example), waits until every
container is healthy (docker compose up --wait), then checks the deployment through nginx with
scripts/health-check.sh prod: https://HOST:HTTPS_PORT with HOST from ALLOWED_ORIGINS, connected
at 127.0.0.1, the certificate checked against HOST.

  --dry-run        only validate the configuration, the secrets and the TLS files
  --build          build TALLOW_IMAGE from this checkout first (default: use the image as it
                   is, for example pulled from your registry)
  --insecure       accept a certificate that does not verify (staging, self-signed)
  --wait S         how long the health check retries (default 120)
  --down           stop the stack (volumes, so Redis data and backups, are kept)
  -h, --help       this help
USAGE
}

env_file="$REPO_ROOT/.env" dry_run=0 build=() action=up check=(--wait 120)
while (($#)); do
    case "$1" in
    --dry-run) dry_run=1 ;;
    --build) build=(--build) ;;
    --insecure) check+=(--insecure) ;;
    --wait)
        check+=(--wait "${2:?--wait needs seconds}")
        shift
        ;;
    --down) action=down ;;
    -h | --help) show_help ;;
    *) bad_usage ;;
    esac
    shift
done

[[ -f "$env_file" ]] || die "$env_file not found: copy .env.example to .env and fill it in"
files=(-f "$COMPOSE_DIR/docker-compose.yml" -f "$COMPOSE_DIR/docker-compose.prod.yml")
stack=(--env-file "$env_file" "${files[@]}")

if [[ "$action" == down ]]; then
    compose "${stack[@]}" down
    exit 0
fi

info "validating the Compose configuration"
compose "${stack[@]}" config -q

cert_dir="$(sed -n 's/^TLS_CERT_DIR=//p' "$env_file" | tail -n 1)"
[[ -n "$cert_dir" ]] || die "TLS_CERT_DIR is not set in $env_file"
[[ "$cert_dir" == /* ]] || cert_dir="$COMPOSE_DIR/$cert_dir"
for file in tls.crt tls.key; do
    [[ -r "$cert_dir/$file" ]] || die "$cert_dir/$file is missing (TLS certificate for nginx)"
done
# nginx runs as uid 101: the key must be its own, or readable by everyone.
read -r mode _ owner _ < <(ls -ln "$cert_dir/tls.key")
if ! [[ ("$owner" == 101 && "${mode:1:1}" == r) || "${mode:7:1}" == r ]]; then
    die "nginx (uid 101) cannot read $cert_dir/tls.key: sudo chown 101 $cert_dir/tls.key"
fi
if grep -Eq '^(REDIS_PASSWORD|TURN_SECRET)=(change-me.*)?$' "$env_file"; then
    die "REDIS_PASSWORD and TURN_SECRET in $env_file still have placeholder values"
fi
[[ "$(env_value "$env_file" REDIS_PASSWORD)" =~ ^[A-Za-z0-9._~-]+$ ]] ||
    die "REDIS_PASSWORD in $env_file must be URL-safe (it goes into REDIS_URL): openssl rand -hex 32"
[[ -n "$(origin_host "$(env_value "$env_file" ALLOWED_ORIGINS)")" ]] ||
    die "ALLOWED_ORIGINS in $env_file must name the public https:// origin (the health check uses it)"

if ((dry_run)); then
    ok "configuration valid; dry run, nothing started"
    exit 0
fi

info "starting the production stack"
# --wait: returns once every container is healthy, or fails when one never gets there.
compose "${stack[@]}" up -d --wait --remove-orphans ${build[@]+"${build[@]}"}
"$REPO_ROOT/scripts/health-check.sh" prod "${check[@]}"
