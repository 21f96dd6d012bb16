#!/bin/sh
# Redis backups for Tallow: RDB snapshots with retention, and restore into a data folder.
# POSIX sh, so the same file runs in the Redis image (Kubernetes CronJob, Compose) and on a host.
#
#   redis-backup.sh backup DIR [KEEP]
#       Snapshot the running Redis (redis-cli --rdb) into DIR/redis-<UTC time>.rdb and delete all
#       but the newest KEEP snapshots (default 7). Connects to REDIS_HOST (default 127.0.0.1) and
#       REDIS_PORT (default 6379) with the password in REDISCLI_AUTH.
#   redis-backup.sh restore FILE DATA_DIR
#       For a STOPPED Redis whose data folder is DATA_DIR: set the current data aside
#       (*.before-restore-<time>), load FILE, and rebuild the append-only file from it with a
#       temporary redis-server on a Unix socket, so Redis started with --appendonly yes has
#       exactly the snapshot's data. Needs redis-server and redis-cli.
#
# Exit status: 0 done, 1 failed, 2 usage error.
set -eu

usage() {
    echo "Usage: scripts/redis-backup.sh backup DIR [KEEP] | restore FILE DATA_DIR"
    sed -n '5,14s/^# \{0,1\}//p' "$0"
}
bad_usage() {
    usage >&2
    exit 2
}

die() {
    echo "redis-backup: $*" >&2
    exit 1
}

stamp() { date -u +%Y%m%dT%H%M%SZ; }

# is_rdb FILE: an RDB file starts with the bytes "REDIS".
is_rdb() { [ -s "$1" ] && [ "$(head -c 5 "$1")" = REDIS ]; }

backup() {
    dir="$1" keep="${2:-7}"
    case "$keep" in '' | *[!0-9]* | 0) die "KEEP must be a whole number above 0, not '$keep'" ;; esac
    mkdir -p "$dir"
    partial="$dir/.partial.rdb"
    if ! output="$(redis-cli -h "${REDIS_HOST:-127.0.0.1}" -p "${REDIS_PORT:-6379}" \
        --rdb "$partial" 2>&1)"; then
        die "redis-cli --rdb failed: $output"
    fi
    is_rdb "$partial" || die "the snapshot is not an RDB file"
    name="$dir/redis-$(stamp).rdb"
    mv "$partial" "$name"
    echo "redis-backup: wrote $name ($(wc -c <"$name") bytes)"
    # The names sort by time: everything after the newest KEEP goes.
    find "$dir" -maxdepth 1 -name 'redis-*.rdb' | sort -r | tail -n "+$((keep + 1))" |
        while read -r old; do
            rm -f "$old"
            echo "redis-backup: removed $old (keeping $keep)"
        done
}

restore() {
    file="$1"
    is_rdb "$file" || die "$file is not an RDB snapshot"
    [ -d "$2" ] || die "$2 is not a folder"
    data="$(cd "$2" && pwd)" # redis-server resolves paths after moving into --dir
    aside="before-restore-$(stamp)"
    for old in "$data/appendonlydir" "$data/dump.rdb"; do
        if [ -e "$old" ]; then
            mv "$old" "$old.$aside"
            echo "redis-backup: moved $old aside to $old.$aside"
        fi
    done
    cp "$file" "$data/dump.rdb"
    # Redis 7 ignores dump.rdb when append-only is on and no AOF exists (it starts empty), so
    # load the snapshot with AOF off, then switch AOF on: Redis writes its base from the data.
    socket="${TMPDIR:-/tmp}/redis-restore-$$.sock"
    redis-server --port 0 --unixsocket "$socket" --dir "$data" --appendonly no --save '' \
        --daemonize yes --logfile "$data/restore.log" --pidfile "${TMPDIR:-/tmp}/redis-restore-$$.pid"
    unset REDISCLI_AUTH # the temporary server has no password
    cli() { redis-cli -s "$socket" "$@"; }
    tries=0
    until cli ping >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -lt 100 ] || die "the temporary redis-server did not start (see $data/restore.log)"
        sleep 0.1
    done
    cli config set appendonly yes >/dev/null
    tries=0
    until cli info persistence | grep -q '^aof_rewrite_in_progress:0' &&
        cli info persistence | grep -q '^aof_rewrite_scheduled:0' &&
        [ -d "$data/appendonlydir" ]; do
        tries=$((tries + 1))
        [ "$tries" -lt 600 ] || die "the append-only file was not rebuilt (see $data/restore.log)"
        sleep 0.1
    done
    cli info persistence | grep -q '^aof_last_bgrewrite_status:ok' ||
        die "rebuilding the append-only file failed (see $data/restore.log)"
    keys="$(cli dbsize)"
    cli shutdown nosave >/dev/null 2>&1 || true
    echo "redis-backup: restored $file into $data ($keys keys); start Redis now"
}

command="${1:-}"
[ "$#" -eq 0 ] || shift
case "$command:$#" in
backup:1 | backup:2) backup "$@" ;;
restore:2) restore "$@" ;;
-h:0 | --help:0) usage ;;
*) bad_usage ;;
esac
