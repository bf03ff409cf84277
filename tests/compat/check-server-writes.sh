#!/bin/sh
# Server-originated writes (SPEC-v2 §4.11) through oversyncd's SQL functions
# (sql/bundle/0003_finalize.sql: sync.begin_server_bundle / sync.commit_server_bundle, finalized by
# oversyncd.finalize_bundle) against the same writes through the go-oversync library of 1f1118f
# (ScopeManager.ExecWrite, SyncService.WithinSyncBundle), on a throwaway PostgreSQL
# (tests/pg.sh):
#
#   tests/compat/check-server-writes.sh [--upstream DIR] [--only NAME]... [--keep]
#
# tests/compat/1f1118f/serverwrites/ is a small Go program of ours, built against the unpacked
# archive through a replace directive: it runs one fixed sequence of 18 steps (bundles of every
# fold rule, foreign-key cycles, cascades, tricky values, a writer continued through both forms,
# and refusals: nothing captured, missing ids, uninitialized and initializing scopes, a retired
# source, tuples out of order and too old) either through the library ("go"), through plain SQL
# over pgx ("sql"), or alternating them step by step ("mixed"). Three databases with the eight
# tables of the example server (sql/examples/bundle-business.sql):
#   go     laid out by oversyncd (tests/compat/bundle-bootstrap), adopted by the library, which
#          writes
#   sql    laid out by the library, adopted by oversyncd (which adds its functions), written by
#          the SQL functions
#   mixed  laid out by oversyncd, written by both in turn
# Checks, for sql and for mixed against go:
#   go-layout-adopted   oversyncd adopts the library's layout (no trigger to reinstall) and adds
#                       its functions
#   *-outcomes          every step's outcome (ok, or the error message) and the NOTIFY payloads on
#                       oversync_bundle_change_v1, byte for byte (user_pk shown as the user id)
#   *-bundles           sync.bundle_log (seq, source tuple, row_count, byte_count, bundle_hash) and
#                       sync.bundle_rows (ordinal, table, key, op, payload_wire text)
#   *-state             sync.user_state, scope_state, source_state, row_state (by user id; the
#                       clock's columns as present or not), an empty capture stage
#   *-business          the rows of the eight business tables
# user_pk values are not compared: the library burns identity values (INSERT ... ON CONFLICT DO
# NOTHING of sync.user_state, several times per write), so the same users get other numbers.
# Prints "PASS name" / "FAIL name" per check, then "compat-server-writes: N checks passed" (exit
# 0) or the failures (exit 1). Exits 77 with "compat-server-writes: SKIPPED: <why>" without a Go
# toolchain, the archive or the Go module proxy (when the module cache lacks pgx); 99 when the
# harness breaks. docs/bundle-protocol.md has the result.
set -u

COMPAT_NAME=compat-server-writes
COMPAT_COMMIT=1f1118f
COMPAT_GO_MIN_MINOR=25                 # the library's go.mod: go 1.25.0 (as run-1f1118f.sh)
COMPAT_GO_BOOTSTRAP=go1.27.3           # for an older go: the toolchain the module proxy serves here
COMPAT_NEEDS_SERVER=0
COMPAT_ONLY_HELP='a check name (see the head of the script)'
COMPAT_USE_NETNS=${COMPAT_USE_NETNS:-no}   # no server to isolate; the databases are on a unix socket
export COMPAT_USE_NETNS
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"

REGISTRY="business.users business.posts business.categories business.teams business.team_members
business.files business.file_reviews business.typed_rows"

# ------------------------------------------------------------- inside the PostgreSQL stage

new_db() {
    conn=$(compat_createdb "$1") || exit 99
    psql -X -q -v ON_ERROR_STOP=1 -d "$conn" -f "$top_srcdir/sql/examples/bundle-business.sql" >"$COMPAT_WORK/logs/business-$1.log" 2>&1 ||
        { cat "$COMPAT_WORK/logs/business-$1.log"; compat_die "cannot load business.sql into $1"; }
    echo "$conn"
}

oversyncd_boot() {
    # shellcheck disable=SC2086
    "$TOOL" "$2" $REGISTRY >"$1" 2>&1
}

# writes MODE CONNINFO: the program's run; its output in $COMPAT_WORK/MODE.out
writes() {
    "$GOBIN" -db "$2" "$1" >"$COMPAT_WORK/$1.out" 2>"$COMPAT_WORK/logs/$1.err" ||
        { cat "$COMPAT_WORK/logs/$1.err"; compat_die "serverwrites $1 failed"; }
}

q() {
    psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$1" -c "$2" || compat_die "query failed on $1: $2"
}

# dump CONNINFO PREFIX: the compared contents, in PREFIX.bundles, PREFIX.state, PREFIX.business
dump() {
    {
        q "$1" "SELECT u.user_id, l.bundle_seq, l.source_id, l.source_bundle_id, l.row_count, l.byte_count,
                       encode(l.bundle_hash, 'hex')
                  FROM sync.bundle_log l JOIN sync.user_state u USING (user_pk) ORDER BY 1, 2"
        q "$1" "SELECT u.user_id, r.bundle_seq, r.row_ordinal, r.table_id, encode(r.key_bytes, 'hex'), r.op_code,
                       r.payload_wire::text
                  FROM sync.bundle_rows r JOIN sync.user_state u USING (user_pk) ORDER BY 1, 2, 3"
    } >"$2.bundles"
    {
        q "$1" "SELECT user_id, next_bundle_seq, retained_bundle_floor FROM sync.user_state ORDER BY 1"
        q "$1" "SELECT u.user_id, s.state_code, s.initializer_source_id, s.initialization_id, s.lease_expires_at,
                       s.initialized_at IS NOT NULL, s.initialized_by_source_id
                  FROM sync.scope_state s JOIN sync.user_state u USING (user_pk) ORDER BY 1"
        q "$1" "SELECT u.user_id, s.source_id, s.state, s.max_committed_source_bundle_id, s.replaced_by_source_id,
                       s.retirement_reason
                  FROM sync.source_state s JOIN sync.user_state u USING (user_pk) ORDER BY 1, 2"
        q "$1" "SELECT u.user_id, s.table_id, encode(s.key_bytes, 'hex'), s.bundle_seq, s.deleted
                  FROM sync.row_state s JOIN sync.user_state u USING (user_pk) ORDER BY 1, 2, 3"
        q "$1" "SELECT 'staged rows left: ' || count(*) FROM sync.bundle_capture_stage"
    } >"$2.state"
    for t in $REGISTRY; do
        q "$1" "SELECT '$t ' || to_jsonb(t)::text FROM $t t ORDER BY 1"
    done >"$2.business"
}

# compare NAME WANT GOT WHAT: PASS when the files are identical
compare() {
    if diff -u "$2" "$3" >"$COMPAT_WORK/logs/$1.diff"; then
        compat_result PASS "$1" "($4, identical)"
    else
        compat_result FAIL "$1" "(the library's -, oversyncd's +)"
        sed 's/^/    /' "$COMPAT_WORK/logs/$1.diff" | head -n 40
    fi
}

stage2() {
    logs=$COMPAT_WORK/logs

    # the library writes on a layout oversyncd created
    GO_DB=$(new_db writes_go)
    oversyncd_boot "$logs/go-boot.log" "$GO_DB" || compat_die "bundle-bootstrap failed: $(cat "$logs/go-boot.log")"
    writes go "$GO_DB"
    dump "$GO_DB" "$COMPAT_WORK/go"
    nsteps=$(grep -c '^step ' "$COMPAT_WORK/go.out")
    nerrors=$(grep -c '^step [0-9]*: error: ' "$COMPAT_WORK/go.out")
    nbundles=$(q "$GO_DB" "SELECT count(*) FROM sync.bundle_log")
    nrows=$(q "$GO_DB" "SELECT count(*) FROM sync.bundle_rows")
    nnotify=$(grep -c '^notify: ' "$COMPAT_WORK/go.out")
    if [ "$nbundles" -lt 8 ] || [ "$nerrors" -lt 8 ] || [ "$nnotify" != "$nbundles" ] ||
        grep -q 'write failed' "$COMPAT_WORK/go.out"; then
        compat_result FAIL go-run "(the library's run went wrong: $nbundles bundles, $nerrors refusals, $nnotify notifications)"
        sed 's/^/    /' "$COMPAT_WORK/go.out"
    fi

    # oversyncd's functions on a layout the library created
    if compat_selected go-layout-adopted || compat_selected sql-outcomes || compat_selected sql-bundles ||
        compat_selected sql-state || compat_selected sql-business; then
        SQL_DB=$(new_db writes_sql)
        "$GOBIN" -db "$SQL_DB" bootstrap >"$logs/sql-go-boot.log" 2>&1 ||
            compat_die "the library's Bootstrap failed: $(cat "$logs/sql-go-boot.log")"
        oversyncd_boot "$logs/sql-boot.log" "$SQL_DB"
        fns=$(q "$SQL_DB" "SELECT count(*) FROM pg_proc WHERE pronamespace = 'sync'::regnamespace
                             AND proname IN ('begin_server_bundle', 'commit_server_bundle')")
        if [ "$(head -n 1 "$logs/sql-boot.log")" = adopted ] &&
            [ "$(tail -n 1 "$logs/sql-boot.log")" = "triggers installed on 0 tables" ] && [ "$fns" = 3 ]; then
            compat_result PASS go-layout-adopted "(the library's layout adopted, the 3 server-write functions added)"
        else
            compat_result FAIL go-layout-adopted "(expected \"adopted\", no trigger reinstalled, 3 functions; found $fns)"
            sed 's/^/    /' "$logs/sql-boot.log" | head -n 20
        fi
        writes sql "$SQL_DB"
        dump "$SQL_DB" "$COMPAT_WORK/sql"
        compare sql-outcomes "$COMPAT_WORK/go.out" "$COMPAT_WORK/sql.out" \
            "$nsteps steps, $nerrors refusals, $nnotify notifications"
        compare sql-bundles "$COMPAT_WORK/go.bundles" "$COMPAT_WORK/sql.bundles" "$nbundles bundles, $nrows rows"
        compare sql-state "$COMPAT_WORK/go.state" "$COMPAT_WORK/sql.state" \
            "$(grep -c . "$COMPAT_WORK/go.state") lines of user, scope, source and row state"
        compare sql-business "$COMPAT_WORK/go.business" "$COMPAT_WORK/sql.business" \
            "$(grep -c . "$COMPAT_WORK/go.business") business rows"
    fi

    # both, step by step in turn, on one database
    if compat_selected mixed-outcomes || compat_selected mixed-bundles || compat_selected mixed-state ||
        compat_selected mixed-business; then
        MIXED_DB=$(new_db writes_mixed)
        oversyncd_boot "$logs/mixed-boot.log" "$MIXED_DB" ||
            compat_die "bundle-bootstrap failed: $(cat "$logs/mixed-boot.log")"
        writes mixed "$MIXED_DB"
        dump "$MIXED_DB" "$COMPAT_WORK/mixed"
        compare mixed-outcomes "$COMPAT_WORK/go.out" "$COMPAT_WORK/mixed.out" \
            "$nsteps steps in turn, $nerrors refusals, $nnotify notifications"
        compare mixed-bundles "$COMPAT_WORK/go.bundles" "$COMPAT_WORK/mixed.bundles" "$nbundles bundles, $nrows rows"
        compare mixed-state "$COMPAT_WORK/go.state" "$COMPAT_WORK/mixed.state" \
            "$(grep -c . "$COMPAT_WORK/go.state") lines of user, scope, source and row state"
        compare mixed-business "$COMPAT_WORK/go.business" "$COMPAT_WORK/mixed.business" \
            "$(grep -c . "$COMPAT_WORK/go.business") business rows"
    fi
    return 0
}

compat_stage2_dispatch

# ------------------------------------------------------------------------------- stage 1

compat_setup "$@"
TOOL=$top_builddir/tests/compat/bundle-bootstrap
[ -x "$TOOL" ] || compat_die "$TOOL is not built (make check builds it; or: make tests/compat/bundle-bootstrap)"
COMPAT_SRC=$(compat_unpack)
DATA=$compat_here/1f1118f
GOBIN=$COMPAT_WORK/bin/serverwrites
export COMPAT_SRC TOOL DATA GOBIN

cp -R "$DATA/serverwrites" "$COMPAT_WORK/serverwrites" || compat_die "cannot copy $DATA/serverwrites"
chmod -R u+w "$COMPAT_WORK/serverwrites"
(cd "$COMPAT_WORK/serverwrites" && "$GO" mod edit -replace "github.com/mobiletoly/go-oversync=$COMPAT_SRC") ||
    compat_die "go mod edit failed"
compat_go_build serverwrites "$COMPAT_WORK/serverwrites" build -o "$GOBIN" . && compat_in_pg stage2
compat_finish
