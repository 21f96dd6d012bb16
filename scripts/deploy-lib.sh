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

# The Compose files use env_file.path, !reset and `up --wait`: Compose 2.24 or newer.
COMPOSE_MINIMUM=2.24

# version_at_least VERSION MINIMUM: true when VERSION (e.g. v2.27.1) >= MINIMUM (e.g. 2.24).
version_at_least() {
    local version="${1#v}" major minor want_major want_minor
    IFS=. read -r major minor _ <<<"$version"
    IFS=. read -r want_major want_minor _ <<<"$2"
    [[ "$major" =~ ^[0-9]+$ && "${minor:-0}" =~ ^[0-9]+$ ]] || return 1
    ((major > want_major || (major == want_major && ${minor:-0} >= want_minor)))
}

# compose ARGS...: Docker Compose (2.24+), as the docker plugin or the standalone binary.
compose() {
    local command=() version
    if docker compose version >/dev/null 2>&1; then
        command=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        command=(docker-compose)
    else
        die "Docker Compose is not installed (docker compose or docker-compose, $COMPOSE_MINIMUM+)"
    fi
    version="$("${command[@]}" version --short 2>/dev/null || true)"
    version_at_least "$version" "$COMPOSE_MINIMUM" ||
        die "Docker Compose ${version:-of unknown version} is too old: these files need $COMPOSE_MINIMUM or newer"
    "${command[@]}" "$@"
}

# env_value FILE NAME: the last NAME=value of a .env file (empty when unset).
env_value() {
    sed -n "s/^$2=//p" "$1" | tail -n 1
}

# origin_host ORIGINS: the host name of the first origin of a comma list (ALLOWED_ORIGINS).
origin_host() {
    local origin="${1%%,*}"
    origin="${origin#*://}"
    printf '%s\n' "${origin%%[:/]*}"
}
