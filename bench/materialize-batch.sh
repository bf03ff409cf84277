#!/usr/bin/env bash
# PostgreSQL CPU of the generic materializer per 1000 changes, set-based against change by change
# (issue #11, item 1). A private PostgreSQL 15 cluster (pg_stat_statements loaded), the go-oversync
# example tables business.users and business.posts (posts.author_id → users, DEFERRABLE INITIALLY
# DEFERRED), and bench/materialize_batch.c calling sync_upload in-process on one connection: no
# HTTP, so the figures are the database's and the sync core's only. Not part of `make check`.
#
#   bench/materialize-batch.sh [BATCHES [BATCH_SIZE [ROUNDS]]]     (default 50 200 3)
#
# Each round runs materializer none (the baseline), set_materialization = off, then on, on fresh
# tables (rounds interleave the modes); each mode uploads BATCHES batches of BATCH_SIZE INSERTs (half users, half their posts)
# and as many UPDATEs of the same rows. Printed per mode and round: backend CPU (utime + stime of
# the connection's backend from /proc), pg_stat_statements exec + plan time, client CPU, wall time,
# all per 1000 changes; then each mode's median. TOP_STATEMENTS=1 also lists each run's costliest
# statements. PRELOAD=N first fills each table with N rows of nobody's (a business table that is
# not empty: a plan that scans the table shows). Needs a configured tree (./configure) and
# PostgreSQL 15 server binaries. ITEMS=1: bench/run upload-generic's table bench.items_gen instead
# (one table, no foreign key, payloads of about 1 KB).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BATCHES=${1:-50}
SIZE=${2:-200}
ROUNDS=${3:-3}

pgbin() {
    for d in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/initdb" ] && { echo "$d"; return; }
    done
    echo "materialize-batch: PostgreSQL server binaries not found" >&2; exit 1
}
PGBIN=$(pgbin)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

make -C "$ROOT" -s liboversyncd.a >/dev/null
T=$(mktemp -d "${TMPDIR:-/tmp}/oversyncd-matbench.XXXXXX")
chmod 755 "$T"
mkdir -p "$T/pg"
if [ "$(id -u)" = 0 ]; then chown postgres: "$T/pg"; fi
cleanup() {
    as_pg "$PGBIN/pg_ctl" -D "$T/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap cleanup EXIT
cc -O2 -g -std=gnu11 -include "$ROOT/config.h" -I"$ROOT/src" -I"$ROOT/include" \
    $(pkg-config --cflags libpq json-c) "$ROOT/bench/materialize_batch.c" -o "$T/materialize_batch" \
    "$ROOT/liboversyncd.a" $(pkg-config --libs libpq json-c) -ljwt -lcrypto -lfcgi -ldl -lm
as_pg "$PGBIN/initdb" -D "$T/pg/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$T/initdb.log" 2>&1
as_pg "$PGBIN/pg_ctl" -D "$T/pg/data" -l "$T/pg/server.log" -w \
    -o "-k $T/pg -c listen_addresses='' -c fsync=off -c shared_buffers=256MB -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all -c pg_stat_statements.track_planning=on -c plan_cache_mode=force_custom_plan" \
    start >/dev/null
DBURL="host=$T/pg port=5432 user=postgres dbname=postgres"
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -h "$T/pg" -U postgres -d postgres "$@"; }
psql_q -c "CREATE EXTENSION pg_stat_statements"

fresh_tables() {
    psql_q -c "DROP SCHEMA IF EXISTS bench CASCADE" -c "CREATE SCHEMA bench" \
        -c "CREATE TABLE bench.items_gen (id uuid PRIMARY KEY, name text, body text, n int)"
    psql_q -c "DROP SCHEMA IF EXISTS business CASCADE" -c "CREATE SCHEMA business" \
        -c "CREATE TABLE business.users (id uuid PRIMARY KEY, name text NOT NULL, email text NOT NULL,
              created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now())" \
        -c "CREATE TABLE business.posts (id uuid PRIMARY KEY, title text NOT NULL, content text NOT NULL,
              author_id uuid REFERENCES business.users (id) DEFERRABLE INITIALLY DEFERRED,
              created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now())" 2>/dev/null
    if [ "${PRELOAD:-0}" -gt 0 ]; then
        psql_q -c "INSERT INTO business.users (id, name, email)
                     SELECT ('ffffffff-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'preloaded ' || i, i || '@example.com'
                       FROM generate_series(1, $PRELOAD) i" \
            -c "INSERT INTO business.posts (id, title, content, author_id)
                     SELECT ('fffffffe-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'post ' || i, repeat('x', 200),
                            ('ffffffff-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid
                       FROM generate_series(1, $PRELOAD) i" \
            -c "VACUUM ANALYZE business.users" -c "VACUUM ANALYZE business.posts"
    fi
}

out=$T/results
: >"$out"
run=0
for r in $(seq "$ROUNDS"); do
    for mode in none off on; do
        run=$((run + 1))
        fresh_tables
        # statistics as autovacuum would keep them on a server that runs for a while (the sidecar
        # grows from run to run; with the statistics of an empty table some lookups scan it)
        psql_q -c "ANALYZE" -c "CHECKPOINT" >/dev/null
        "$T/materialize_batch" "$DBURL" "$mode" "$BATCHES" "$SIZE" "$mode" "$run" | sed "s/^/r$r /" | tee -a "$out"
    done
done
echo "--- medians over $ROUNDS rounds (per 1000 changes; $BATCHES x 2 batches of $SIZE per run)"
for mode in none off on; do
    for k in backend_cpu_ms stmt_ms client_cpu_ms wall_ms; do
        key=${mode}_${k}_per_1000
        vals=$(sed -n "s/^r[0-9]* $key=//p" "$out" | sort -g)
        n=$(printf '%s\n' "$vals" | grep -c .)
        echo "$key=$(printf '%s\n' "$vals" | sed -n "$(((n + 1) / 2))p")"
    done
done
