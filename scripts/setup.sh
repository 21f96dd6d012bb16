#!/usr/bin/env bash
# Prepare this checkout: a virtual environment in .venv with Tallow installed (editable), and
# with --test everything the test suite needs (Debian packages, test tools, the built web UI).
# Safe to run again: each step only does what is missing.
set -euo pipefail
usage() {
  cat <<'USAGE'
Usage: scripts/setup.sh [--test]
  (no option)  .venv with Tallow and its pinned dependencies; the web UI is rebuilt when npm exists
  --test       also the Debian packages in scripts/apt-packages.txt, the test tools, the
               command-line peer (the peer extra) and the UI build
Environment: PYTHON (default python3; 3.11 or newer)
USAGE
}
cd "$(dirname "$0")/.."
mode="runtime"
case "${1:-}" in
  "") ;;
  --test) mode="test" ;;
  -h|--help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac
python=${PYTHON:-python3}
say() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root for: $*"; return 1; fi
}

apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  say "Tallow needs Python 3.11 or newer as \$PYTHON (found: $("$python" --version 2>&1))"
  exit 1
fi
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  apt_install python3-venv
fi
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$python" -m venv .venv
fi
extras=""
[ "$mode" = test ] && extras="[test,build,peer]"
say "installing Tallow$extras into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".$extras"

if [ "$mode" = test ]; then
  mapfile -t packages < <(grep -v '^\s*#' scripts/apt-packages.txt | grep -v '^\s*$')
  command -v npm >/dev/null || packages+=(nodejs npm)
  apt_install "${packages[@]}"
fi
if [ -f web/package.json ] && command -v npm >/dev/null; then
  say "building the web UI"
  (cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
elif [ -f web/package.json ]; then
  say "npm not found: serving the web UI as committed in tallow/static"
fi
