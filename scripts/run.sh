#!/usr/bin/env bash
# Set up this checkout (scripts/setup.sh) and run Tallow on its embedded default:
# one process, in-memory broker, http://localhost:3000 (TALLOW_PORT or --port to change).
# Extra arguments go to `tallow serve`, e.g. scripts/run.sh --port 8080.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/tallow serve "$@"
