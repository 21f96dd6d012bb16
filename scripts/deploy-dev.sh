#!/usr/bin/env bash
# Start the local development stack (hot reload, Redis, coturn) and wait until it is healthy.
set -euo pipefail
# shellcheck source=scripts/deploy-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/deploy-lib.sh"

usage() {
    cat <<USAGE
Usage: scripts/deploy-dev.sh [--down] [--logs] [--no-build]

Runs manifests/compose/docker-compose.dev.yml: Tallow with live code on http://localhost:3000
(a second, signaling-only replica on port 3001), Redis and coturn. Edits under tallow/ restart
the servers. Then checks http://localhost:3000 with scripts/health-check.sh dev.

  --down       stop the stack and remove its containers
  --logs       follow the logs after starting
  --no-build   do not rebuild the development image
  -h, --help   this help
USAGE
}

build=(--build) action=up follow=0
while (($#)); do
    case "$1" in
    --down) action=down ;;
    --logs) follow=1 ;;
    --no-build) build=() ;;
    -h | --help) show_help ;;
    *) bad_usage ;;
    esac
    shift
done

files=(-f "$COMPOSE_DIR/docker-compose.dev.yml")
if [[ "$action" == down ]]; then
    compose "${files[@]}" down --remove-orphans
    exit 0
fi

info "starting the development stack"
compose "${files[@]}" up -d --wait ${build[@]+"${build[@]}"}
"$REPO_ROOT/scripts/health-check.sh" dev
if ((follow)); then
    compose "${files[@]}" logs -f
fi
