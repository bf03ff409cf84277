#!/bin/sh
# Byte-compatibility of the bundle protocol's sidecar (src/bundle/, sql/bundle/) with the
# go-oversync library of 1f1118f, in both directions, on a throwaway PostgreSQL (tests/pg.sh):
#
#   tests/compat/check-bundle-schema.sh [--upstream DIR] [--only NAME]... [--keep]
#
# The library comes from shared/upstream/go-oversync-1f1118f.tar.gz (never part of this
# project), unpacked into a temporary directory; tests/compat/1f1118f/bootstrap/ is a small Go
# program of ours that calls its Bootstrap (and, for one check, ScopeManager.ExecWrite), built
# against the unpacked tree through a replace directive. oversyncd's side is
# tests/compat/bundle-bootstrap (built by make check), which calls bundle_bootstrap(). Both
# register the eight tables of the example server (sql/examples/bundle-business.sql, shared with
# run-1f1118f.sh).
#
# Checks:
#   oversyncd-creates          oversyncd lays out an empty database
#   go-adopts                  the library bootstraps against it (it validates the marker row and
#                              the catalog, creates nothing and reinstalls the triggers)
#   oversyncd-readopts         oversyncd then finds the library's triggers exactly right
#   go-creates                 the library lays out an empty database
#   oversyncd-adopts           oversyncd adopts it: same catalog, no trigger to reinstall
#   sync-schema-dump           pg_dump --schema-only --schema=sync of the two databases: identical
#                              but for the text of the two trigger function bodies (written for
#                              this project) and oversyncd's server-write functions
#                              (sql/bundle/0003_finalize.sql, left out of the comparison); the body
#                              difference is printed, not failed
#   server-write-functions     those functions are in oversyncd's layout, and in the library's once
#                              oversyncd adopted it: the two dumps are then identical but for the
#                              trigger function bodies (tests/compat/check-server-writes.sh runs them
#                              against the library's writers)
#   business-schema-dump       the same of schema business (the triggers): identical
#   trigger-oracle             tests/compat/1f1118f/trigger-oracle.sql prints identical results
#                              against oversyncd's trigger functions and the library's
#   go-writes                  the library's server-side writer (ExecWrite: bundle context, capture
#                              by the triggers, finalization into a bundle) gives the same bundles
#                              on a database laid out by oversyncd as on one it laid out itself
#   old-layout-refused         both refuse schema sync holding the old protocol's tables, with the
#                              reference's message
# Prints "PASS name" / "FAIL name" per check, then "compat-bundle-schema: N checks passed" (exit
# 0) or the failures (exit 1). Exits 77 with "compat-bundle-schema: SKIPPED: <why>" without a Go
# toolchain, the archive or the Go module proxy (when the module cache lacks pgx); 99 when the
# harness breaks. docs/bundle-protocol.md has the result.
set -u

COMPAT_NAME=compat-bundle-schema
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
# the numbering both must agree on: rank of schema.table in byte order, key id (uuid, kind 1)
EXPECTED_CATALOG="1 business.categories id 1
2 business.file_reviews id 1
3 business.files id 1
4 business.posts id 1
5 business.team_members id 1
6 business.teams id 1
7 business.typed_rows id 1
8 business.users id 1"

# ------------------------------------------------------------- inside the PostgreSQL stage

pg_tool() {
    if [ -n "${PG_BINDIR:-}" ] && [ -x "$PG_BINDIR/$1" ]; then echo "$PG_BINDIR/$1"; return; fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/$1" ] && { echo "$d/$1"; return; }
    done
    command -v "$1"
}

# new_db NAME: a database holding the business tables; prints its connection string
new_db() {
    conn=$(compat_createdb "$1") || exit 99
    psql -X -q -v ON_ERROR_STOP=1 -d "$conn" -f "$top_srcdir/sql/examples/bundle-business.sql" >"$COMPAT_WORK/logs/business-$1.log" 2>&1 ||
        { cat "$COMPAT_WORK/logs/business-$1.log"; compat_die "cannot load business.sql into $1"; }
    echo "$conn"
}

# oversyncd_boot LOG CONNINFO: bundle_bootstrap with the example registry; output in LOG
oversyncd_boot() {
    # shellcheck disable=SC2086
    "$TOOL" "$2" $REGISTRY >"$1" 2>&1
}

go_boot() {
    log=$1 conn=$2
    shift 2
    "$GOBIN" -db "$conn" "$@" >"$log" 2>&1
}

# expect_boot NAME LOG created|adopted TRIGGERS: the tool's output, line by line
expect_boot() {
    want="$3
$EXPECTED_CATALOG
triggers installed on $4 tables"
    if [ "$(cat "$2")" = "$want" ]; then
        compat_result PASS "$1" "($3, $4 tables' triggers installed)"
    else
        compat_result FAIL "$1" "(expected \"$3\", the catalog and $4 tables' triggers installed)"
        sed 's/^/    /' "$2" | head -n 20
    fi
}

# schema_dump CONNINFO SCHEMA FILE: pg_dump --schema-only, without the lines that differ by design
# in every dump (\restrict keys of pg_dump >= 15.14)
schema_dump() {
    "$PG_DUMP" --schema-only --schema="$2" -d "$1" 2>"$3.err" |
        grep -v -E '^\\(un)?restrict ' >"$3" || { cat "$3.err"; compat_die "pg_dump of $2 failed"; }
}

# the dump without the entries of oversyncd's server-write functions (sql/bundle/0003_finalize.sql),
# which are no part of the library's layout; a dump entry runs from its "--" / "-- Name: ..."
# header to the next one
without_server_writes() {
    awk 'held { if ($0 ~ /^-- /) skip = ($0 ~ /^-- Name: (begin|commit)_server_bundle\(/)
                if (!skip) print "--"
                held = 0 }
         $0 == "--" { held = 1; next }
         !skip { print }
         END { if (held && !skip) print "--" }' "$1"
}

# the function bodies replaced by a marker (a body runs from "AS $tag$" to the line ending "$tag$;")
mask_bodies() {
    awk '/^    AS \$[A-Za-z_]*\$/ { print "    AS <function body>"; inbody = 1; next }
         inbody && /\$[A-Za-z_]*\$;$/ { inbody = 0; next }
         inbody { next }
         { print }' "$1"
}

stage2() {
    PG_DUMP=$(pg_tool pg_dump) || compat_die "pg_dump not found"
    logs=$COMPAT_WORK/logs

    # oversyncd first, then the library
    if compat_selected oversyncd-creates || compat_selected go-adopts || compat_selected oversyncd-readopts ||
        compat_selected sync-schema-dump || compat_selected server-write-functions ||
        compat_selected business-schema-dump; then
        A=$(new_db by_oversyncd)
        oversyncd_boot "$logs/oversyncd-creates.log" "$A"
        expect_boot oversyncd-creates "$logs/oversyncd-creates.log" created 8
        schema_dump "$A" sync "$COMPAT_WORK/sync-by-oversyncd.sql"
        schema_dump "$A" business "$COMPAT_WORK/business-by-oversyncd.sql"
        if go_boot "$logs/go-adopts.log" "$A" bootstrap && [ "$(cat "$logs/go-adopts.log")" = "bootstrap ok" ]; then
            compat_result PASS go-adopts "(the library's Bootstrap on oversyncd's layout)"
        else
            compat_result FAIL go-adopts "(the library's Bootstrap on oversyncd's layout)"
            sed 's/^/    /' "$logs/go-adopts.log" | head -n 20
        fi
        oversyncd_boot "$logs/oversyncd-readopts.log" "$A"
        expect_boot oversyncd-readopts "$logs/oversyncd-readopts.log" adopted 0
    fi

    # the library first, then oversyncd
    if compat_selected go-creates || compat_selected oversyncd-adopts || compat_selected sync-schema-dump ||
        compat_selected server-write-functions || compat_selected business-schema-dump; then
        B=$(new_db by_go)
        if go_boot "$logs/go-creates.log" "$B" bootstrap && [ "$(cat "$logs/go-creates.log")" = "bootstrap ok" ]; then
            compat_result PASS go-creates "(the library's Bootstrap on an empty database)"
        else
            compat_result FAIL go-creates "(the library's Bootstrap on an empty database)"
            sed 's/^/    /' "$logs/go-creates.log" | head -n 20
        fi
        schema_dump "$B" sync "$COMPAT_WORK/sync-by-go.sql"
        schema_dump "$B" business "$COMPAT_WORK/business-by-go.sql"
        oversyncd_boot "$logs/oversyncd-adopts.log" "$B"
        expect_boot oversyncd-adopts "$logs/oversyncd-adopts.log" adopted 0
        schema_dump "$B" sync "$COMPAT_WORK/sync-by-go-adopted.sql"
    fi

    if [ -n "${A:-}" ] && [ -n "${B:-}" ]; then
        # the library's layout against oversyncd's without its server-write functions
        without_server_writes "$COMPAT_WORK/sync-by-oversyncd.sql" >"$COMPAT_WORK/sync-by-oversyncd.layout"
        diff -u "$COMPAT_WORK/sync-by-go.sql" "$COMPAT_WORK/sync-by-oversyncd.layout" >"$logs/sync-schema.diff"
        mask_bodies "$COMPAT_WORK/sync-by-go.sql" >"$COMPAT_WORK/sync-by-go.masked"
        mask_bodies "$COMPAT_WORK/sync-by-oversyncd.layout" >"$COMPAT_WORK/sync-by-oversyncd.masked"
        nbodies=$(grep -c '^    AS <function body>$' "$COMPAT_WORK/sync-by-go.masked")
        if [ "$nbodies" != 2 ]; then
            compat_result FAIL sync-schema-dump "(expected the bodies of 2 functions in the library's dump, found $nbodies)"
        elif diff -u "$COMPAT_WORK/sync-by-go.masked" "$COMPAT_WORK/sync-by-oversyncd.masked" >"$logs/sync-schema-masked.diff"; then
            if [ -s "$logs/sync-schema.diff" ]; then
                compat_result PASS sync-schema-dump "($(wc -l <"$COMPAT_WORK/sync-by-go.sql") lines, identical but for the text of the 2 trigger function bodies)"
                echo "    remaining difference, the bodies (PL/pgSQL written for this project, same behaviour: trigger-oracle, go-writes):"
                for f in "$COMPAT_WORK/sync-by-go.sql" "$COMPAT_WORK/sync-by-oversyncd.layout"; do
                    awk -v who="$(case $f in *by-go*) echo "the library's" ;; *) echo "oversyncd's  " ;; esac)" '
                        /^CREATE FUNCTION/ { name = $3 }
                        /^    AS \$[A-Za-z_]*\$/ { inbody = 1; n = 0; next }
                        inbody && /\$[A-Za-z_]*\$;$/ { inbody = 0; printf "      %s %s: %d lines\n", who, name, n + 1; next }
                        inbody { n++ }' "$f"
                done
            else
                compat_result PASS sync-schema-dump "($(wc -l <"$COMPAT_WORK/sync-by-go.sql") lines, identical, function bodies included)"
            fi
        else
            compat_result FAIL sync-schema-dump "(pg_dump of schema sync differs outside the function bodies)"
            sed 's/^/    /' "$logs/sync-schema-masked.diff" | head -n 40
        fi
        # both databases, once oversyncd adopted the library's: the same functions, the server-write
        # ones included, identical but for the two trigger function bodies
        nfns=$(grep -c -E '^CREATE FUNCTION sync\.(begin|commit)_server_bundle\(' "$COMPAT_WORK/sync-by-oversyncd.sql")
        mask_bodies "$COMPAT_WORK/sync-by-go-adopted.sql" >"$COMPAT_WORK/sync-by-go-adopted.masked"
        mask_bodies "$COMPAT_WORK/sync-by-oversyncd.sql" >"$COMPAT_WORK/sync-by-oversyncd.all-masked"
        if [ "$nfns" != 3 ]; then
            compat_result FAIL server-write-functions "(expected 3 server-write functions in oversyncd's layout, found $nfns)"
        elif diff -u "$COMPAT_WORK/sync-by-go-adopted.masked" "$COMPAT_WORK/sync-by-oversyncd.all-masked" \
            >"$logs/sync-schema-adopted.diff"; then
            compat_result PASS server-write-functions "(sync.begin_server_bundle x2, sync.commit_server_bundle: in oversyncd's layout, and in the library's once oversyncd adopted it)"
        else
            compat_result FAIL server-write-functions "(schema sync of the library's layout adopted by oversyncd -, of oversyncd's +)"
            sed 's/^/    /' "$logs/sync-schema-adopted.diff" | head -n 40
        fi
        if diff -u "$COMPAT_WORK/business-by-go.sql" "$COMPAT_WORK/business-by-oversyncd.sql" >"$logs/business-schema.diff"; then
            compat_result PASS business-schema-dump "($(grep -c '^CREATE TRIGGER' "$COMPAT_WORK/business-by-go.sql") triggers, identical)"
        else
            compat_result FAIL business-schema-dump "(pg_dump of schema business differs)"
            sed 's/^/    /' "$logs/business-schema.diff" | head -n 40
        fi
    fi

    if compat_selected trigger-oracle; then
        C=$(new_db oracle_oversyncd)
        D=$(new_db oracle_go)
        oversyncd_boot "$logs/oracle-oversyncd-boot.log" "$C" || compat_die "bundle-bootstrap failed: $(cat "$logs/oracle-oversyncd-boot.log")"
        go_boot "$logs/oracle-go-boot.log" "$D" bootstrap || compat_die "the library's Bootstrap failed: $(cat "$logs/oracle-go-boot.log")"
        psql -X -d "$C" -f "$DATA/trigger-oracle.sql" >"$logs/oracle-oversyncd.out" 2>"$logs/oracle-oversyncd.err"
        psql -X -d "$D" -f "$DATA/trigger-oracle.sql" >"$logs/oracle-go.out" 2>"$logs/oracle-go.err"
        errors=$(grep -c '^P0001 \|^22P02 \|^23502 \|^23503 ' "$logs/oracle-go.out")
        if [ "$errors" -lt 20 ]; then
            compat_result FAIL trigger-oracle "(the oracle ran badly against the library's functions: only $errors refusals)"
            tail -n 20 "$logs/oracle-go.err" | sed 's/^/    /'
        elif diff -u "$logs/oracle-go.out" "$logs/oracle-oversyncd.out" >"$logs/oracle.diff"; then
            compat_result PASS trigger-oracle "($(grep -c . "$logs/oracle-go.out") lines of results, $errors refusals, identical)"
        else
            compat_result FAIL trigger-oracle "(the library's functions -, oversyncd's +)"
            sed 's/^/    /' "$logs/oracle.diff" | head -n 40
        fi
    fi

    if compat_selected go-writes; then
        E=$(new_db writes_oversyncd)
        F=$(new_db writes_go)
        oversyncd_boot "$logs/writes-oversyncd-boot.log" "$E" || compat_die "bundle-bootstrap failed: $(cat "$logs/writes-oversyncd-boot.log")"
        go_boot "$logs/writes-oversyncd.out" "$E" write
        rc_e=$?
        go_boot "$logs/writes-go.out" "$F" write
        rc_f=$?
        if [ $rc_e -ne 0 ] || [ $rc_f -ne 0 ]; then
            compat_result FAIL go-writes "(ExecWrite failed: on oversyncd's layout $rc_e, on the library's $rc_f)"
            cat "$logs/writes-oversyncd.out" "$logs/writes-go.out" | head -n 20 | sed 's/^/    /'
        elif diff -u "$logs/writes-go.out" "$logs/writes-oversyncd.out" >"$logs/writes.diff"; then
            compat_result PASS go-writes "($(grep -c '"bundle_seq"' "$logs/writes-go.out") bundles, $(grep -c '"op"' "$logs/writes-go.out") rows, identical hashes)"
        else
            compat_result FAIL go-writes "(the bundles differ: the library's layout -, oversyncd's +)"
            sed 's/^/    /' "$logs/writes.diff" | head -n 40
        fi
    fi

    if compat_selected old-layout-refused; then
        G=$(new_db old_layout)
        psql -X -q -v ON_ERROR_STOP=1 -d "$G" -c "CREATE SCHEMA sync" \
            -c "CREATE TABLE sync.sync_row_meta (user_id text, pk_uuid uuid)" \
            -c "CREATE TABLE sync.server_change_log (server_id bigserial PRIMARY KEY)" >/dev/null ||
            compat_die "cannot create the old layout"
        ref='existing sync schema uses unsupported layout; drop and recreate the sync schema for layout "server_postgres_sync_v1"'
        go_boot "$logs/old-go.log" "$G" bootstrap
        rc_g=$?
        oversyncd_boot "$logs/old-oversyncd.log" "$G"
        rc_o=$?
        if [ $rc_g -ne 0 ] && [ $rc_o -ne 0 ] && grep -qF "$ref" "$logs/old-go.log" && grep -qF "$ref" "$logs/old-oversyncd.log"; then
            compat_result PASS old-layout-refused "(both: $ref)"
        else
            compat_result FAIL old-layout-refused "(exit status: library $rc_g, oversyncd $rc_o)"
            cat "$logs/old-go.log" "$logs/old-oversyncd.log" | sed 's/^/    /'
        fi
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
GOBIN=$COMPAT_WORK/bin/go-bootstrap
export COMPAT_SRC TOOL DATA GOBIN

# Our program, built against the unpacked library: go.mod's replace directive points at it.
cp -R "$DATA/bootstrap" "$COMPAT_WORK/bootstrap" || compat_die "cannot copy $DATA/bootstrap"
chmod -R u+w "$COMPAT_WORK/bootstrap"
(cd "$COMPAT_WORK/bootstrap" && "$GO" mod edit -replace "github.com/mobiletoly/go-oversync=$COMPAT_SRC") ||
    compat_die "go mod edit failed"
compat_go_build go-bootstrap "$COMPAT_WORK/bootstrap" build -o "$GOBIN" . && compat_in_pg stage2
compat_finish
