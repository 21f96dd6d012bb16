#!/usr/bin/env bash
# Build dist/tallow.pyz: Tallow, its web UI and its pinned dependencies in one file that any
# Linux machine (this architecture) with Python 3.11 or newer runs as `python3 tallow.pyz serve`.
# With --peer, dist/tallow-peer.pyz instead: the same plus the command-line peer and its `peer`
# extra (aiortc, PyAV, ...), run as `python3 tallow-peer.pyz send FILE`. The server's zipapp
# leaves the peer out (tallow/peer and its extra), so its size does not change with it.
#
# Reproducible: the same commit builds the same bytes (timestamps come from the commit, pip's
# machine-specific records are dropped). Compiled dependencies are included once per supported
# Python version; their file names carry the version tag, so the copies sit side by side.
set -euo pipefail
usage() {
  cat <<'USAGE'
Usage: scripts/build-zipapp.sh [--peer] [--output FILE] [--skip-ui]
Builds the web UI (when web/package.json exists) and then dist/tallow.pyz (or FILE).
--peer builds dist/tallow-peer.pyz: with the command-line peer (tallow send / receive).
--skip-ui packages tallow/static as it is (already built).
Environment: PYTHON (default .venv/bin/python, else python3), SOURCE_DATE_EPOCH (default: the
time of the last commit), TALLOW_PYTHON_VERSIONS (default "3.11 3.12 3.13 3.14"; with --peer,
the building Python's version only: PyAV is about 34 MiB per version).
USAGE
}
cd "$(dirname "$0")/.."
output=""
build_ui=yes
peer=no
while [ $# -gt 0 ]; do
  case "$1" in
    --peer) peer=yes; shift ;;
    --output) output=$2; shift 2 ;;
    --skip-ui) build_ui=no; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
if [ "$peer" = yes ]; then
  output=${output:-dist/tallow-peer.pyz}
  versions=${TALLOW_PYTHON_VERSIONS:-$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')}
else
  output=${output:-dist/tallow.pyz}
  versions=${TALLOW_PYTHON_VERSIONS:-3.11 3.12 3.13 3.14}
fi
"$python" -m shiv --version >/dev/null 2>&1 || "$python" -m pip install --quiet "shiv==1.0.8"

if [ "$build_ui" = yes ] && [ -f web/package.json ]; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
fi

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
site="$staging/site"
machine=$(uname -m)
requirements="$staging/requirements.txt"
"$python" - "$requirements" "$peer" <<'PY'
import configparser, sys
config = configparser.ConfigParser()
config.read("setup.cfg")
text = config["options"]["install_requires"]
if sys.argv[2] == "yes":
    text += config["options.extras_require"]["peer"]
pins = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
open(sys.argv[1], "w").write("\n".join(pins) + "\n")
PY
# Tallow itself (pure Python, with the UI as package data), then every dependency per version.
"$python" -m pip install --quiet --no-compile --no-deps --target "$site" .
[ "$peer" = yes ] || rm -rf "$site/tallow/peer"
for version in $versions; do
  "$python" -m pip install --quiet --no-compile --target "$staging/py$version" \
    --python-version "$version" --implementation cp --only-binary=:all: \
    --platform "manylinux_2_28_$machine" --platform "manylinux_2_17_$machine" \
    --platform "manylinux2014_$machine" --platform "linux_$machine" \
    -r "$requirements"
  cp -Rn "$staging/py$version/." "$site/"
done
# pip records where it installed from (an absolute path of this machine): not part of the app.
find "$site" -name direct_url.json -delete
find "$site" -name RECORD -delete
find "$site" -type d -name __pycache__ -prune -exec rm -rf {} +

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 315532800)}
mkdir -p "$(dirname "$output")"
"$python" -m shiv --site-packages "$site" --compressed --reproducible \
  --entry-point tallow.cli:main --python '/usr/bin/env python3' --output-file "$output"
echo "built $output ($(du -h "$output" | cut -f1))"
