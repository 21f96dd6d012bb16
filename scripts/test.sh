#!/usr/bin/env bash
# Set up everything the tests need (scripts/setup.sh --test), check style and types, run the
# whole suite under coverage (child processes included) and report it.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/integration -x; the coverage bar
# (fail_under in pyproject.toml) applies only to a run of the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
echo "==> ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> eslint, tsc --checkJs" >&2
(cd web && npm run --silent lint && npm run --silent typecheck)
echo "==> mypy (strict)" >&2
.venv/bin/mypy
echo "==> pytest, measuring coverage of tallow/" >&2
rm -rf build/coverage
status=0
.venv/bin/coverage run -m pytest "${@:-tests}" || status=$?
echo "==> coverage (HTML report: build/coverage/html/index.html)" >&2
.venv/bin/coverage combine --quiet
.venv/bin/coverage html --quiet --fail-under=0
bar=()
[ $# -gt 0 ] && bar=(--fail-under=0)
if ! .venv/bin/coverage report ${bar[@]+"${bar[@]}"}; then
  echo "coverage of tallow/ is below fail_under in pyproject.toml" >&2
  [ "$status" -ne 0 ] || status=2
fi
exit "$status"
