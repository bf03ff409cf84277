#!/bin/sh
# Compatibility oracle for the bundle protocol of SPEC-v2.md: the clients of go-oversync 1f1118f
# (June 2026) against the freshly built ./oversyncd behind lighttpd, on a throwaway PostgreSQL.
#
#   tests/compat/run-1f1118f.sh [--upstream DIR] [--server oversyncd|reference] [--only NAME]... [--keep]
#
# From shared/upstream/go-oversync-1f1118f.tar.gz (never part of this project), unpacked into a
# temporary directory and built with the Go module proxy:
#   * examples/mobile_flow, the mobile-app simulator: each of its 20 scenarios (the 13 of its
#     "all" and the 7 of its "watch-all") is one check, run on its own against the server (it
#     empties the server's tables first, syncs through oversqlite, and verifies the client's
#     SQLite and the server's tables);
#   * the oversqlite_e2e tests (52), one check each, built with the shim of 1f1118f/e2e-shim/ so
#     that they talk to the server under test instead of the reference started in process; the
#     server prepares each test through its test hook (docs/compatibility.md).
# --server reference runs the same checks against the reference itself: mobile_flow against
# examples/nethttp_server, the e2e tests against 1f1118f/refserver/ (our wrapper of the
# reference's example server package that adds the test hook).
#
# Prints "PASS name" / "FAIL name" / "XFAIL name" / "SKIP name" per check, then
# "compat-1f1118f: N checks passed" (exit 0), or the failures (exit 1). Exits 77 with
# "compat-1f1118f: SKIPPED: <why>" when there is no Go toolchain, no archive or no module proxy,
# and, with --server oversyncd, while oversyncd does not serve the bundle protocol.
# docs/compatibility.md has the details and the reference's results.
set -u

COMPAT_NAME=compat-1f1118f
COMPAT_COMMIT=1f1118f
COMPAT_GO_MIN_MINOR=25                 # its go.mod: go 1.25.0, no toolchain line
COMPAT_GO_BOOTSTRAP=go1.27.3           # for an older go: the toolchain the module proxy serves here
COMPAT_SCENARIO_TIMEOUT=${COMPAT_SCENARIO_TIMEOUT:-180}   # seconds, one client run (the longest takes ~15 s)
COMPAT_E2E_JWT_SECRET=oversqlite-end-to-end-secret      # the e2e tests' own (helpers_test.go)
COMPAT_ONLY_HELP='a scenario name, "watch" or "e2e"'
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"

data=$compat_here/1f1118f
# The bundle-protocol configuration of oversyncd (see the file); COMPAT_OVERSYNCD_CONF names
# another, to try one out while the implementation evolves.
bundle_conf=${COMPAT_OVERSYNCD_CONF:-$data/oversyncd.conf}

# examples/mobile_flow/main.go: its "all" (13) and its "watch-all" (7), in their order.
SCENARIOS="fresh-install normal-usage reinstall device-replacement offline-online conflicts
user-switch bundle-fk-atomicity complex-multi-batch multi-device-sync multi-device-complex
files-sync typed-rows"
WATCH_SCENARIOS="watch-peer-push watch-server-originated watch-reconnect-catch-up watch-default-off
watch-server-unsupported-fallback watch-idle-cleanup watch-many-clients-converge"

# Scenarios that fail against the reference server itself (SPEC-v2 §7, §8.9), as
# "name|what its failure says (grep -E)|why" lines. Failing like that, they are reported XFAIL
# (against either server) and do not fail the run; failing otherwise, they fail it; passing, they
# pass, with a note.
REFERENCE_FAILURES='complex-multi-batch|committed bundle does not match canonical outbox row|replaying its committed push after a restart, the client compares its outbox (timestamps in ns) with the committed bundle rows the server returns (PostgreSQL keeps µs) and finds them different (SPEC-v2 §8.9)
typed-rows|must use canonical dashed lowercase UUID text|its client ids typed-null and typed-rich are not UUIDs, which the uuid key column refuses with 400 (SPEC-v2 §7)'

# Known failures against oversyncd, "name|why" lines, as in run-78e1be6.sh: reported XFAIL and
# not counted as passed; passing, XPASS, which fails the run, so that the list stays true.
KNOWN_FAILURES=

field() { # field LIST NAME N: the Nth |-field of NAME's line
    printf '%s\n' "$1" | awk -F'|' -v n="$2" -v f="$3" '$1 == n { print $f; exit }'
}

selected_any() {
    for n in "$@"; do compat_selected "$n" && return 0; done
    return 1
}

scenario_selected() {
    compat_selected "$1" && return 0
    case " $(echo $WATCH_SCENARIOS) " in
    *" $1 "*) compat_selected watch && return 0 ;;
    esac
    return 1
}

# ------------------------------------------------------------- inside the PostgreSQL stage

run_scenario() {
    name=$1
    log=$COMPAT_WORK/logs/scenario-$name.log
    t=$(compat_now)
    (cd "$COMPAT_WORK/run" && timeout "$COMPAT_SCENARIO_TIMEOUT" "$COMPAT_WORK/bin/mobile_flow" \
        --scenario="$name" --server="$COMPAT_URL" --db="$COMPAT_DB" --jwt-secret="$COMPAT_JWT_SECRET") >"$log" 2>&1
    rc=$?
    secs=$(($(compat_now) - t))
    ok=
    [ $rc -eq 0 ] && grep -q 'Mobile flow simulation completed successfully' "$log" && ok=1
    # Two scenarios of 1f1118f are stubs: their Execute only logs "<X> scenario not yet
    # implemented" and their Verify returns nil; they send no request. Not counted as passed.
    if [ -n "$ok" ] && grep -q 'scenario not yet implemented' "$log"; then
        compat_result SKIP "$name" "(${secs}s): a stub in $COMPAT_COMMIT (\"$(grep -o '[A-Za-z/ -]* scenario not yet implemented' "$log" | head -n 1 | sed 's/^ *//')\"): completes, but sends no request and checks nothing"
        return
    fi
    why=
    if [ -z "$ok" ]; then
        why=$(grep -E 'Scenario failed:|Failed to create simulator:' "$log" | tail -n 1 | sed 's/^.*\(Scenario failed: \)/\1/' | cut -c1-300)
        [ $rc -eq 124 ] && why="timed out after ${COMPAT_SCENARIO_TIMEOUT}s"
        [ -n "$why" ] || why="exit status $rc"
    fi
    ref_pattern=$(field "$REFERENCE_FAILURES" "$name" 2)
    ref_why=$(field "$REFERENCE_FAILURES" "$name" 3)
    known=
    [ "$COMPAT_SERVER" = oversyncd ] && known=$(field "$KNOWN_FAILURES" "$name" 2)
    if [ -n "$ok" ] && [ -n "$known" ]; then
        compat_result XPASS "$name" "(${secs}s): listed as a known failure but passed; remove it from KNOWN_FAILURES"
    elif [ -n "$ok" ] && [ -n "$ref_pattern" ]; then
        compat_result PASS "$name" "(${secs}s) (it fails against the reference on Linux: $ref_why)"
    elif [ -n "$ok" ]; then
        compat_result PASS "$name" "(${secs}s)"
    elif [ -n "$known" ]; then
        compat_result XFAIL "$name" "(${secs}s): $why [known: $known]"
    elif [ -n "$ref_pattern" ] && [ $rc -ne 124 ] && grep -Eq "$ref_pattern" "$log"; then
        compat_result XFAIL "$name" "(${secs}s): $why [fails against the reference too: $ref_why]"
    else
        compat_result FAIL "$name" "(${secs}s): $why"
        echo "    ---- last lines of $name's output ----"
        grep -v '^[[:space:]]*$' "$log" | tail -n 25 | cut -c1-400 | sed 's/^/    /'
    fi
}

WATCH_UNSERVED=
run_scenarios() {
    for s in $SCENARIOS; do
        scenario_selected "$s" && run_scenario "$s"
    done
    for s in $WATCH_SCENARIOS; do
        scenario_selected "$s" || continue
        if [ -n "$WATCH_UNSERVED" ]; then
            compat_result SKIP "$s" "($WATCH_UNSERVED)"
        else
            run_scenario "$s"
        fi
    done
    # One line for the simulator as a whole: how many of its scenarios completed (stubs included,
    # as upstream counts them), and which failed.
    n=0 done=0 pass=0 stub=0 xfail=
    for s in $SCENARIOS $WATCH_SCENARIOS; do
        res=$(awk -v n="$s" '$2 == n { print $1 }' "$COMPAT_WORK/results" | tail -n 1)
        [ -n "$res" ] || continue
        n=$((n + 1))
        case $res in
        PASS) done=$((done + 1)); pass=$((pass + 1)) ;;
        SKIP) done=$((done + 1)); stub=$((stub + 1)) ;;
        XFAIL) xfail="$xfail $s" ;;
        esac
    done
    compat_log "mobile_flow against $COMPAT_SERVER: $done of $n scenarios completed ($pass passed, $stub stubs)${xfail:+; known failures (XFAIL):$xfail}"
}

# The e2e tests' database, as a URL (their harness parses it with net/url).
e2e_database_url() {
    echo "postgres://${PGUSER:-postgres}@localhost:${PGPORT:-5432}/$1?host=$PGHOST&sslmode=disable"
}

# run_e2e URL DBURL SECRET: the oversqlite_e2e tests through the shim against the server at URL.
run_e2e() {
    url=$1 db=$2 secret=$3
    log=$COMPAT_WORK/logs/oversqlite_e2e.log
    t=$(compat_now)
    # -test.timeout: Go names the test that hangs, before timeout(1) would stop the binary.
    (cd "$COMPAT_SRC/oversqlite_e2e" && OVERSYNC_E2E_SERVER_URL=$url OVERSYNC_E2E_DATABASE_URL=$db \
        OVERSYNC_E2E_JWT_SECRET=$secret TEST_DATABASE_URL=$db \
        timeout "$COMPAT_SCENARIO_TIMEOUT" "$COMPAT_WORK/bin/oversqlite_e2e.test" -test.v -test.count=1 \
        -test.timeout="$((COMPAT_SCENARIO_TIMEOUT - 10))s") >"$log" 2>&1
    rc=$?
    secs=$(($(compat_now) - t))
    # top-level results only ("--- PASS: TestX (0.01s)"); subtests are indented
    grep -E '^--- (PASS|FAIL|SKIP): ' "$log" | while read -r _ res name _; do
        res=${res%:}
        case $res in
        PASS) compat_result PASS "e2e:$name" ;;
        SKIP) compat_result SKIP "e2e:$name" "(skipped by the test itself)" ;;
        *)
            compat_result FAIL "e2e:$name"
            sed -n "/^=== RUN   $name\$/,/^--- FAIL: $name /p" "$log" | grep -E 'Error|error|expected|actual|\.go:[0-9]+' |
                head -n 12 | cut -c1-300 | sed 's/^/    /'
            ;;
        esac
    done
    ran=$(grep -c -E '^--- (PASS|FAIL|SKIP): ' "$log")
    want=$(cat "$COMPAT_WORK/e2e-tests")
    if [ $rc -ne 0 ] && ! grep -q '^--- FAIL: ' "$log"; then
        compat_result FAIL e2e "(the test binary exited with status $rc without a failed test$([ $rc -eq 124 ] && echo ", timed out after ${COMPAT_SCENARIO_TIMEOUT}s"))"
        grep -v '^[[:space:]]*$' "$log" | tail -n 20 | cut -c1-300 | sed 's/^/    /'
    elif [ "$ran" -ne "$want" ]; then
        compat_result FAIL e2e "($ran of the $want tests reported a result)"
    fi
    compat_log "oversqlite_e2e against $COMPAT_SERVER: $(grep -c '^--- PASS: ' "$log") of $want tests passed (${secs}s, through the shim, server at $url)"
}

stage2_reference() {
    # mobile_flow against the archive's own example server, on :8080, which it always uses.
    if selected_any $SCENARIOS $WATCH_SCENARIOS watch; then
        compat_port_free 8080 ||
            compat_die "127.0.0.1:8080 is taken; the reference example server always listens on :8080"
        COMPAT_DB=$(compat_createdb compat_reference_server)
        compat_spawn "$COMPAT_WORK/logs/nethttp_server.log" \
            env DATABASE_URL="$COMPAT_DB" JWT_SECRET="$COMPAT_JWT_SECRET" "$COMPAT_WORK/bin/nethttp_server"
        COMPAT_URL=http://127.0.0.1:8080
        compat_wait_health "$COMPAT_URL/syncx/health" || {
            tail -n 30 "$COMPAT_WORK/logs/nethttp_server.log"
            compat_die "the reference server did not answer GET /syncx/health"
        }
        compat_log "reference example server of $COMPAT_COMMIT at $COMPAT_URL"
        run_scenarios
        compat_stop_servers
    fi
    # The e2e tests against our wrapper of the same server, with the test hook.
    if compat_selected e2e; then
        compat_createdb compat_e2e >/dev/null
        db=$(e2e_database_url compat_e2e)
        rm -f "$COMPAT_WORK/refserver.url"
        compat_spawn "$COMPAT_WORK/logs/refserver.log" env DATABASE_URL="$db" JWT_SECRET="$COMPAT_E2E_JWT_SECRET" \
            "$COMPAT_WORK/bin/refserver" -listen 127.0.0.1:0 -url-file "$COMPAT_WORK/refserver.url"
        i=0
        while [ ! -s "$COMPAT_WORK/refserver.url" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
        [ -s "$COMPAT_WORK/refserver.url" ] || { tail -n 30 "$COMPAT_WORK/logs/refserver.log"; compat_die "refserver did not start"; }
        url=$(cat "$COMPAT_WORK/refserver.url")
        compat_log "reference example server with the e2e test hook (1f1118f/refserver) at $url"
        run_e2e "$url" "$db" "$COMPAT_E2E_JWT_SECRET"
        compat_stop_servers
    fi
}

# The words of a refusal of the bundle configuration that mean "not implemented yet", without
# the file and line of the (temporary) configuration file.
not_served_refusal() {
    grep -E 'unknown (key|section)' "$1" | head -n 1 | sed 's/^.*:[0-9][0-9]*: //'
}

stage2_oversyncd() {
    COMPAT_DB=$(compat_createdb compat_oversyncd)
    if ! compat_prepare_oversyncd "$COMPAT_DB" "$top_srcdir/sql/examples/bundle-business.sql" "$bundle_conf"; then
        why=$(not_served_refusal "$COMPAT_WORK/logs/check-config.log")
        [ -n "$why" ] && compat_skip "oversyncd does not serve the bundle protocol yet (oversyncd --check-config refuses the bundle configuration: $why)"
        cat "$COMPAT_WORK/logs/check-config.log"
        compat_die "oversyncd --check-config refused the bundle configuration ($bundle_conf) against the database"
    fi
    compat_run_oversyncd "$COMPAT_DB"
    # The protocol lands route by route: run only once every route the client uses is served
    # (without a token a served route answers 401, an unknown one 404).
    for probe in "GET /sync/pull" "POST /sync/push-sessions" "GET /sync/committed-bundles/1/rows" \
        "POST /sync/snapshot-sessions"; do
        method=${probe%% *}
        if [ "$method" = POST ]; then body='--data-binary {}'; else body=; fi
        # shellcheck disable=SC2086
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X "$method" $body "$COMPAT_URL${probe#* }")
        [ "$code" = 404 ] && compat_skip "oversyncd does not serve the whole bundle protocol yet ($probe answers 404)"
    done
    # /sync/watch (issue #13) may come later than the rest: its scenarios are skipped until then.
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$COMPAT_URL/sync/watch")
    [ "$code" = 404 ] && WATCH_UNSERVED="oversyncd does not serve GET /sync/watch yet (it answers 404)"
    if selected_any $SCENARIOS $WATCH_SCENARIOS watch; then
        run_scenarios
    fi
    compat_stop_servers
    if compat_selected e2e; then
        # A server of its own on a database of its own: the hook drops every schema there.
        compat_createdb compat_e2e >/dev/null
        db=$(e2e_database_url compat_e2e)
        compat_prepare_oversyncd "$db" "$top_srcdir/sql/examples/bundle-business.sql" "$bundle_conf" ||
            { cat "$COMPAT_WORK/logs/check-config.log"; compat_die "oversyncd --check-config refused the configuration for the e2e tests"; }
        compat_run_oversyncd "$db"
        code=$(curl -s -o "$COMPAT_WORK/logs/e2e-hook-probe.json" -w '%{http_code}' -X POST \
            -H 'Content-Type: application/json' -d '{"business_schema":"e2e_hook_probe"}' "$COMPAT_URL/test/e2e/setup")
        if [ "$code" = 200 ]; then
            run_e2e "$COMPAT_URL" "$db" "$COMPAT_JWT_SECRET"
        else
            compat_result SKIP e2e "(oversyncd answers POST /test/e2e/setup with $code: it does not serve the e2e test hook of docs/compatibility.md, which these tests need)"
        fi
        compat_stop_servers
    fi
}

stage2() {
    mkdir -p "$COMPAT_WORK/run"
    if [ "$COMPAT_SERVER" = reference ]; then
        stage2_reference
    else
        stage2_oversyncd
    fi
    return 0
}

compat_stage2_dispatch

# ------------------------------------------------------------------------------- stage 1

compat_setup "$@"

# Before anything is built: an oversyncd that refuses the bundle configuration's keys does not
# serve the protocol, and the run is skipped -- unless it already has the protocol's routes, in
# which case the configuration here has to follow it (1f1118f/oversyncd.conf).
if [ "$COMPAT_SERVER" = oversyncd ]; then
    compat_write_oversyncd_conf "$bundle_conf" "$COMPAT_WORK/probe.conf"
    env -u DATABASE_URL "$top_builddir/oversyncd" -c "$COMPAT_WORK/probe.conf" --check-config \
        >"$COMPAT_WORK/logs/probe-check-config.log" 2>&1
    why=$(not_served_refusal "$COMPAT_WORK/logs/probe-check-config.log")
    if [ -n "$why" ]; then
        if grep -aq '/sync/pull' "$top_builddir/oversyncd"; then
            compat_result FAIL config "(oversyncd knows the route /sync/pull but refuses the bundle configuration $bundle_conf: $why; make that file say what oversyncd's bundle configuration is)"
            compat_finish
        fi
        compat_skip "oversyncd does not serve the bundle protocol yet (oversyncd --check-config refuses the bundle configuration: $why)"
    fi
fi

COMPAT_SRC=$(compat_unpack)
export COMPAT_SRC
built=1

if selected_any $SCENARIOS $WATCH_SCENARIOS watch; then
    compat_go_build mobile_flow "$COMPAT_SRC/examples/mobile_flow" build -o "$COMPAT_WORK/bin/mobile_flow" . || built=
    if [ "$COMPAT_SERVER" = reference ]; then
        compat_go_build nethttp_server "$COMPAT_SRC" build -o "$COMPAT_WORK/bin/nethttp_server" ./examples/nethttp_server || built=
    fi
fi

if compat_selected e2e; then
    # The shim (1f1118f/e2e-shim/): two files of ours, and the harness's own
    # newExampleServerWithConfig renamed so that the shim's takes its place and calls it when no
    # external server is named. The tests and the client library stay as they are.
    helpers=$COMPAT_SRC/oversqlite_e2e/helpers_test.go
    sed -i 's/^func newExampleServerWithConfig(/func newExampleServerWithConfigInProcess(/' "$helpers"
    [ "$(grep -c '^func newExampleServerWithConfigInProcess(' "$helpers")" = 1 ] ||
        compat_die "$helpers no longer defines newExampleServerWithConfig as the e2e shim expects (1f1118f/e2e-shim/)"
    cp "$data/e2e-shim/external_server_test.go" "$COMPAT_SRC/oversqlite_e2e/zz_oversyncd_external_server_test.go"
    cp "$data/e2e-shim/external_testserver.go" "$COMPAT_SRC/examples/nethttp_server/server/zz_oversyncd_external_testserver.go"
    cat "$COMPAT_SRC"/oversqlite_e2e/*_test.go | grep -c '^func Test' >"$COMPAT_WORK/e2e-tests"
    compat_go_build oversqlite_e2e "$COMPAT_SRC" test -c -tags oversyncd_compat_e2e \
        -o "$COMPAT_WORK/bin/oversqlite_e2e.test" ./oversqlite_e2e || built=
    if [ "$COMPAT_SERVER" = reference ]; then
        # Our wrapper module, on the unpacked reference (go.mod's replace) and with its go.sum.
        cp -R "$data/refserver" "$COMPAT_WORK/refserver"
        (cd "$COMPAT_WORK/refserver" && "$GO" mod edit -replace "github.com/mobiletoly/go-oversync=$COMPAT_SRC") &&
            cp "$COMPAT_SRC/go.sum" "$COMPAT_WORK/refserver/go.sum" ||
            compat_die "cannot prepare $COMPAT_WORK/refserver"
        compat_go_build refserver "$COMPAT_WORK/refserver" build -o "$COMPAT_WORK/bin/refserver" . || built=
    fi
fi

[ -n "$built" ] && compat_in_pg stage2
compat_finish
