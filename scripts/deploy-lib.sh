# shellcheck shell=bash
# Helpers sourced by scripts/deploy-*.sh, health-check.sh and container-test.sh:
# messages (coloured only when stdout is a terminal and NO_COLOR is unset), tool checks, paths.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
COMPOSE_DIR="$REPO_ROOT/manifests/compose"
# shellcheck disable=SC2034
K8S_DIR="$REPO_ROOT/manifests/k8s"

if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
    C_RED=$'\033[31m' C_GREEN=$'\033[32m' C_YELLOW=$'\033[33m' C_RESET=$'\033[0m'
else
    C_RED='' C_GREEN='' C_YELLOW='' C_RESET=''
fi

info() { printf '%s==>%s %s\n' "$C_GREEN" "$C_RESET" "$*"; }
ok() { printf '%sok%s   %s\n' "$C_GREEN" "$C_RESET" "$*"; }
fail() { printf '%sFAIL%s %s\n' "$C_RED" "$C_RESET" "$*"; }
warn() { printf '%swarning:%s %s\n' "$C_YELLOW" "$C_RESET" "$*" >&2; }
die() {
    printf '%serror:%s %s\n' "$C_RED" "$C_RESET" "$*" >&2
    exit 1
}

# For the option parsers: each script defines usage().
show_help() {
    usage
    exit 0
}
bad_usage() {
    usage >&2
    exit 2
}

# need TOOL WHY: stop with a clear message when a required command is missing.
need() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed ($2)"
}

# compose ARGS...: Docker Compose v2, as the docker plugin or the standalone binary.
compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose "$@"
    elif command -v docker-compose >/dev/null 2>&1; then
        docker-compose "$@"
    else
        die "Docker Compose v2 is not installed (docker compose or docker-compose)"
    fi
}
