#!/usr/bin/env bash
# Set up everything the tests need (scripts/setup.sh --test), check style, run the whole suite.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/integration -x.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
echo "==> ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> eslint" >&2
(cd web && npm run --silent lint && npm run --silent typecheck)
echo "==> pytest" >&2
exec .venv/bin/pytest "${@:-tests}"
