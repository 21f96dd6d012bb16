#!/usr/bin/env bash
# Build the production image from a locally made Debian base and test it as it runs in production.
set -euo pipefail
# shellcheck source=scripts/deploy-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/deploy-lib.sh"

usage() {
    cat <<USAGE
Usage: scripts/container-test.sh

Runs tests/deployment/test_container.py (pytest -m container), which needs root, podman,
buildah and debootstrap:
  1. makes base images with debootstrap (Debian bookworm: python3 for the build and runtime,
     nodejs/npm for the web UI) unless they exist, and imports them into podman;
  2. builds packaging/Dockerfile with buildah, passing them as BASE_IMAGE and NODE_IMAGE;
  3. runs the image read-only as its non-root user, expects 200 from /api/health and a
     healthy HEALTHCHECK, then sends SIGTERM and expects exit status 0;
  4. prints the image size.
Takes several minutes the first time (debootstrap), about two after that.

  -h, --help   this help
USAGE
}

case "${1:-}" in
'') ;;
-h | --help) show_help ;;
*) bad_usage ;;
esac
need podman "apt-get install podman"
need buildah "apt-get install buildah"
need debootstrap "apt-get install debootstrap"
cd "$REPO_ROOT"
exec .venv/bin/python -m pytest -m container -p no:cacheprovider -s tests/deployment/test_container.py
