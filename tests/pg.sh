#!/bin/sh
# Throwaway PostgreSQL cluster for the tests.
#
#   pg.sh run CMD [ARGS...]   start a cluster, run CMD with PGHOST/PGUSER/DATABASE_URL set, stop it
#   pg.sh start DIR           (re)start the cluster living in DIR     (used by tests that stop it)
#   pg.sh stop DIR            stop it (fast shutdown)
#
# initdb and pg_ctl refuse to run as root, so as root they run as the postgres user in a
# directory it owns. The server listens only on a unix socket inside DIR, fsync off.
set -eu

pgbin() {
    if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/initdb" ] && { echo "$d"; return; }
    done
    command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return; }
    echo "pg.sh: initdb not found (install postgresql)" >&2
    exit 1
}

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    dir=$1
    as_owner "$(pgbin)/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-k $dir -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=128MB" \
        start >/dev/null
}

stop() {
    dir=$1
    as_owner "$(pgbin)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

create() {
    dir=$(mktemp -d "${TMPDIR:-/tmp}/oversyncd-pg.XXXXXX")
    chmod 755 "$dir"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
    fi
    as_owner "$(pgbin)/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    echo "$dir"
}

case "${1:-}" in
run)
    shift
    dir=$(create)
    trap 'stop "$dir"; rm -rf "$dir"' EXIT INT TERM
    start "$dir"
    export PGHOST="$dir" PGUSER=postgres PGDATABASE=postgres PGPORT=5432
    export DATABASE_URL="host=$dir port=5432 user=postgres dbname=postgres"
    export OVERSYNCD_TEST_PGDIR="$dir"
    export OVERSYNCD_TEST_PGSH="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
    set +e
    "$@"
    rc=$?
    set -e
    # 77: the command skipped itself (automake's convention), which is no PostgreSQL trouble
    if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ -f "$dir/server.log" ]; then
        echo "---- tail of the PostgreSQL log ----" >&2
        tail -n 30 "$dir/server.log" >&2
    fi
    exit $rc
    ;;
start) start "$2" ;;
stop) stop "$2" ;;
*) echo "usage: pg.sh run CMD... | start DIR | stop DIR" >&2; exit 2 ;;
esac
