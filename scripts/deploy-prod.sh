#!/usr/bin/env bash
# Deploy the production Compose stack (nginx + TLS, replicas, Redis with AOF) on this host.
set -euo pipefail
# shellcheck source=scripts/deploy-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/deploy-lib.sh"

usage() {
    cat <<USAGE
Usage: scripts/deploy-prod.sh [--dry-run] [--no-build] [--down]

Validates and starts manifests/compose/docker-compose.yml + docker-compose.prod.yml with the
variables from .env at the repository root (start from .env.example), then checks the
deployment through nginx with scripts/health-check.sh prod.

  --dry-run        only validate the configuration and the TLS files, change nothing
  --no-build       use TALLOW_IMAGE as it is (for example pulled from your registry)
  --down           stop the stack (volumes, so Redis data, are kept)
  -h, --help       this help
USAGE
}

env_file="$REPO_ROOT/.env" dry_run=0 build=(--build) action=up
while (($#)); do
    case "$1" in
    --dry-run) dry_run=1 ;;
    --no-build) build=() ;;
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
if grep -Eq '^(REDIS_PASSWORD|TURN_SECRET)=(change-me.*)?$' "$env_file"; then
    die "REDIS_PASSWORD and TURN_SECRET in $env_file still have placeholder values"
fi

if ((dry_run)); then
    ok "configuration valid; dry run, nothing started"
    exit 0
fi

info "starting the production stack"
compose "${stack[@]}" up -d --wait --remove-orphans "${build[@]}"
"$REPO_ROOT/scripts/health-check.sh" prod
