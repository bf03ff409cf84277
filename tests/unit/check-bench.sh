#!/usr/bin/env bash
# bench/ without running a benchmark (issue #11, item 5): every script of bench/ parses
# (bash -n); bench/compare-lib.sh, the evaluation half of bench/compare, gives the expected
# medians, ratios, CPU per 1000 changes, verdicts and table on canned result files; and the load
# generators compile, with the users-posts mode of bench/client.c refusing what it cannot do.
# Ends with "bench: N checks passed". Skipped (77) where bench/ is absent (a release tarball).
set -u
top_srcdir=${top_srcdir:-.}
root=$(cd "$top_srcdir" && pwd) || exit 99
[ -f "$root/bench/compare-lib.sh" ] || { echo "bench/ not in this tree: skipped"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/oversyncd-bench-check.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT

. "$root/tests/checks.sh"

# ------------------------------------------------------------------ the scripts parse
for f in "$root"/bench/run "$root"/bench/compare "$root"/bench/compare-bundle "$root"/bench/watch-run \
    "$root"/bench/finalize-bundle "$root"/bench/lib.sh "$root"/bench/compare-lib.sh "$root"/bench/request-cost; do
    [ -f "$f" ] || continue
    check "bash -n bench/$(basename "$f")" bash -n "$f"
done
check "bench/compare --help prints the scenarios" sh -c "'$root/bench/compare' --help | grep -q upload-materialize"
out=$("$root/bench/compare" --servers "oversyncd nginx" 2>&1)
check "bench/compare refuses an unknown server" test "$?" = 1 -a "$out" = "bench/compare: unknown server nginx"
out=$("$root/bench/compare" --scenarios "upload-new upload-fast" 2>&1)
check "bench/compare refuses an unknown scenario" test "$out" = "bench/compare: unknown scenario: upload-fast (see bench/compare --help)"
out=$("$root/bench/compare" --rounds x 2>&1)
check "bench/compare refuses a round count that is not a number" test "$out" = 'bench/compare: not a number: "x"'

if [ -f "$root/bench/request-cost" ]; then
    # refused before anything is built or started (exit 2, one line saying why)
    out=$("$root/bench/request-cost" --requests x 2>&1)
    check "bench/request-cost refuses a request count that is not a number" test "$?" = 2 -a "$out" = "bench/request-cost: --requests needs a number"
    out=$("$root/bench/request-cost" --requests 99 2>&1)
    check "bench/request-cost refuses fewer than 100 requests" test "$?" = 2 -a "$out" = "bench/request-cost: --requests must be at least 100"
    out=$("$root/bench/request-cost" --binary 2>&1)
    check "bench/request-cost refuses an option without its value" test "$?" = 2 -a "$out" = "bench/request-cost: --binary needs a value"
    out=$("$root/bench/request-cost" --bogus 2>&1)
    check "bench/request-cost refuses an unknown option" test "$?" = 2 -a "$out" = "bench/request-cost: unknown option --bogus"
fi

# ------------------------------------------------------------ the evaluation, canned
. "$root/bench/compare-lib.sh"
RESULTS=$tmp/results
mkdir -p "$RESULTS"
# put SCENARIO SERVER ROUND FIGURE OTHERS [KEY=VALUE...]: one canned result file
put() {
    local sc=$1 srv=$2 r=$3 v=$4 o=$5 k
    shift 5
    k=$(cmp_key "$sc")
    { echo "scenario=$sc"; echo "server=$srv"; echo "round=$r"; echo "$k=$v"
      echo "machine_busy_cores=1.90"; echo "cpu_not_this_run_cores=$o"
      echo "loadavg_before=1.$r 0.5 0.2"; echo "loadavg_max_during=3.$r"; echo "loadavg_after=2.$r 0.6 0.3"
      for kv in "$@"; do echo "$kv"; done; } >"$RESULTS/$sc.$srv.r$r.txt"
}
SERVERS="oversyncd 78e1be6 b26b5a4 floor trivial"
SCENARIOS=(upload-new upload-update upload-materialize download schema-version)

check "floor only in upload-new" test "$(cmp_servers_for upload-new)" = "oversyncd 78e1be6 b26b5a4 floor"
check "trivial only in schema-version" test "$(cmp_servers_for schema-version)" = "oversyncd 78e1be6 b26b5a4 trivial"
check "neither in download" test "$(cmp_servers_for download)" = "oversyncd 78e1be6 b26b5a4"
check "the figure of schema-version is requests/s" test "$(cmp_key schema-version)" = requests_per_s

# medians: three clean rounds -> the middle; a disturbed round (> 0.2 cores of others) is left
# out when a clean one exists (two clean -> the lower); all disturbed -> all count
put upload-new oversyncd 1 300 0.05 wall_seconds=10 units=20000 cpu_postgres_cores=1.20 cpu_oversyncd_cores=0.30 cpu_lighttpd_cores=0.05 peak_rss_MiB=40.1 server_processes=5
put upload-new oversyncd 2 100 0.10
put upload-new oversyncd 3 200 0.20 wall_seconds=10 units=20000 cpu_postgres_cores=1.20 cpu_oversyncd_cores=0.30 cpu_lighttpd_cores=0.05 peak_rss_MiB=40.1 server_processes=5
check "median of three clean rounds" test "$(cmp_median upload-new oversyncd)" = 200
put upload-new b26b5a4 1 100 0.05
put upload-new b26b5a4 2 500 0.90
put upload-new b26b5a4 3 150 0.10
check "a disturbed round is left out; of two, the lower" test "$(cmp_median upload-new b26b5a4)" = 100
put upload-new 78e1be6 1 30 0.50
put upload-new 78e1be6 2 10 0.40
put upload-new 78e1be6 3 20 0.30
check "all rounds disturbed: all count" test "$(cmp_median upload-new 78e1be6)" = 20
put upload-new floor 1 400 0.05
check "one round: that one" test "$(cmp_median upload-new floor)" = 400
check "no round: nothing" test -z "$(cmp_median upload-new nobody)"
check "the median round's file" test "$(cmp_median_file upload-new oversyncd)" = "$RESULTS/upload-new.oversyncd.r3.txt"
check "a key of the median round" test "$(cmp_median upload-new oversyncd cpu_not_this_run_cores)" = 0.20

check "ratio" test "$(cmp_ratio 300 200)" = 1.50
check "ratio, two decimals" test "$(cmp_ratio 2 3)" = 0.67
check "no ratio without a divisor" test -z "$(cmp_ratio 300 0)$(cmp_ratio 300 '')$(cmp_ratio '' 2)"
check "1.50 >= 1.5 is met" test "$(cmp_verdict 1.50 '>=' 1.5)" = met
check "1.49 >= 1.5 is not met" test "$(cmp_verdict 1.49 '>=' 1.5)" = "not met"
check "0.0030 <= 0.003 is met" test "$(cmp_verdict 0.0030 '<=' 0.003)" = met
check "0.0031 <= 0.003 is not met" test "$(cmp_verdict 0.0031 '<=' 0.003)" = "not met"
check "no value is not measured" test "$(cmp_verdict '' '>=' 1.5)" = "not measured"
check "percent" test "$(cmp_fmt_pct 0.805)" = "81 %"

f=$RESULTS/upload-new.oversyncd.r1.txt
check "CPU s per 1000: 1.2 cores x 10 s / 20000 changes" test "$(cmp_per_1000 "$f" postgres)" = 0.6000
check "CPU s per 1000 of a program that used none" test "$(cmp_per_1000 "$f" client)" = 0.0000
check "no CPU s per 1000 without units" test -z "$(cmp_per_1000 "$RESULTS/upload-new.oversyncd.r2.txt" postgres)"
{ cat "$f"; echo cpu_sampled_seconds=9.00; } >"$tmp/sampled"
check "CPU s per 1000: the whole run when it is longer than the sampled time" test "$(cmp_per_1000 "$tmp/sampled" postgres)" = 0.6000
{ grep -v '^wall_seconds=' "$f"; echo wall_seconds=0.5; echo cpu_sampled_seconds=1.00; } >"$tmp/short"
check "CPU s per 1000: the sampled time when a short command was sampled after its end" \
    test "$(cmp_per_1000 "$tmp/short" postgres)" = 0.0600
sed '/^machine_busy_cores=/d' "$f" >"$tmp/nocpu"
check "no CPU s per 1000 without a CPU measurement" test -z "$(cmp_per_1000 "$tmp/nocpu" postgres)"

# a whole run: upload-new 200 vs 100 (2.00, met) and 200 of floor 400 (50 %, not met);
# upload-update 150 vs 100 (1.50, met); upload-materialize 110 vs 100 (1.10, not met, 0.40 short
# of 1.5); download 210 vs 100 (2.10, met), PostgreSQL 0.05 cores x 4 s / 100000 changes =
# 0.0020 s (met); schema-version 95 of trivial 100 (95 %, met): 5 of 7
for r in 1 2 3; do
    put upload-update oversyncd "$r" 150 0.05
    put upload-update b26b5a4 "$r" 100 0.05
    put upload-materialize oversyncd "$r" 110 0.05
    put upload-materialize b26b5a4 "$r" 100 0.05
    put download oversyncd "$r" 210 0.05 wall_seconds=4 units=100000 cpu_postgres_cores=0.05
    put download b26b5a4 "$r" 100 0.05
    put schema-version oversyncd "$r" 95 0.05
    put schema-version trivial "$r" 100 0.05
done
cmp_table >"$tmp/table"
line() { grep -E "$1" "$tmp/table" | head -1 | tr -s ' '; }
check "table: upload-new row" test "$(line '^upload-new ')" = "upload-new 200 20 100 400 - 2.00 oversyncd/b26b5a4 >= 1.5x met"
check "table: upload-materialize row, how far from 1.5x" \
    test "$(line '^upload-materialize ')" = "upload-materialize 110 n/a 100 - - 1.10 oversyncd/b26b5a4 >= 1.2x not met (0.40 short of 1.5x)"
check "table: schema-version row points to its target" \
    test "$(line '^schema-version ')" = "schema-version 95 n/a n/a - 100 n/a see schema-version vs trivial "
check "target: upload-update met" test "$(line '^  upload-update ')" = " upload-update 1.50x oversyncd/b26b5a4 >= 1.5x met"
check "target: upload-new vs floor not met" test "$(line 'upload-new vs floor')" = " upload-new vs floor 50 % oversyncd >= 80 % of floor not met"
check "target: schema-version vs trivial met" test "$(line '^  schema-version vs trivial')" = " schema-version vs trivial 95 % oversyncd >= 90 % of trivial met"
check "target: PostgreSQL CPU per 1000 downloaded changes" \
    test "$(line '^  PostgreSQL CPU')" = " PostgreSQL CPU per 1000 downloaded changes 0.0020 s oversyncd <= 0.003 s met"
check "CPU split line of the median round" \
    test "$(line '^  upload-new +oversyncd ')" = " upload-new oversyncd 0.6000 0.1500 0.0250 0.0000 1.90 cores 40.1 MiB (5 processes)"
check "every round with its load average" \
    grep -q "upload-new           b26b5a4    r1 100 (others 0.05; load 1.1 -> 3.1 -> 2.1); r2 500 (others 0.90; load 1.2 -> 3.2 -> 2.2);" "$tmp/table"
check "last line: targets: 5 of 7 met" test "$(tail -1 "$tmp/table")" = "targets: 5 of 7 met"
check "a server without rounds" grep -q "upload-update        78e1be6    (no round)" "$tmp/table"

# a run of one scenario: the other targets are not measured, and not met
SCENARIOS=(download)
cmp_table >"$tmp/table1"
check "targets of scenarios not run are not measured" test "$(grep -c 'not measured$' "$tmp/table1")" = 5
check "one scenario: targets: 2 of 7 met" test "$(tail -1 "$tmp/table1")" = "targets: 2 of 7 met"

# ----------------------------------------------------------- the load generators build
if command -v cc >/dev/null && pkg-config --exists libcurl 2>/dev/null; then
    if cc -O2 -Wall -Wextra -Werror -std=gnu11 $(pkg-config --cflags libcurl) "$root/bench/client.c" -o "$tmp/client" \
        $(pkg-config --libs libcurl) -pthread 2>"$tmp/cc.log"; then
        pass
        "$tmp/client" upload http://127.0.0.1:9/ /dev/null 1 0 1 4 users-posts 1 >/dev/null 2>"$tmp/err"
        check "users-posts refuses batches smaller than a group (exit 2)" test "$?" = 2
        check "... and says why" grep -q "users-posts needs batches of at least 5 changes" "$tmp/err"
        "$tmp/client" upload http://127.0.0.1:9/ /dev/null 1 0 1 5 delete 1 >/dev/null 2>"$tmp/err"
        check "an unknown OP is refused (exit 2)" test "$?" = 2
    else
        fail "bench/client.c does not compile: $(head -5 "$tmp/cc.log")"
    fi
else
    echo "no cc or libcurl headers: bench/client.c not compiled"
fi
if command -v cc >/dev/null && pkg-config --exists libpq 2>/dev/null; then
    check "bench/floor.c compiles" cc -O2 -Wall -std=gnu11 $(pkg-config --cflags libpq) "$root/bench/floor.c" \
        -o "$tmp/floor" $(pkg-config --libs libpq) -pthread
fi
if command -v cc >/dev/null && [ -f /usr/include/fcgiapp.h ]; then
    check "bench/trivial_fcgi.c compiles" cc -O2 -Wall -std=gnu11 "$root/bench/trivial_fcgi.c" -o "$tmp/trivial" -lfcgi
fi

checks_end bench
