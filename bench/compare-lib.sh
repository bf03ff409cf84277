# The evaluation half of bench/compare (sourced, bash): from the result files of a run (one
# key=value file per scenario, server and round) to the printed table, the targets of issue #11
# and their verdicts. Nothing here starts a program, so tests/unit/check-bench.sh runs it on
# canned files.
#
# A result file is RESULTS/SCENARIO.SERVER.rROUND.txt with at least round=, the scenario's
# figure (changes_per_s=, or requests_per_s= for schema-version), cpu_*_cores= (bench/lib.sh
# cpu_report), cpu_not_this_run_cores=, wall_seconds= (the measured command's whole run,
# warm-up included), units= (the changes or requests of that whole run), peak_rss_MiB= and
# loadavg_before= / loadavg_after=.
#
# The caller sets RESULTS, SCENARIOS (array) and SERVERS (words), and prints the header itself.

# cmp_get FILE KEY: the first value of KEY in FILE (empty when absent)
cmp_get() { [ -f "$1" ] && sed -n "s/^$2=//p" "$1" | head -1 || true; }

# cmp_key SCENARIO: the key of the scenario's figure
cmp_key() { case $1 in schema-version) echo requests_per_s ;; *) echo changes_per_s ;; esac; }

# cmp_servers_for SCENARIO: the servers of $SERVERS that take part in SCENARIO. floor (the
# set-based SQL floor, bench/floor.c) only in upload-new, trivial (the trivial FastCGI
# responder) only in schema-version; the HTTP servers in all.
cmp_servers_for() {
    local s out=
    for s in $SERVERS; do
        case $s in
        floor) [ "$1" = upload-new ] || continue ;;
        trivial) [ "$1" = schema-version ] || continue ;;
        esac
        out+="$s "
    done
    echo "${out% }"
}

# cmp_median_file SCENARIO SERVER: the file of the median round, by bench/run's rule: rounds
# during which programs not of this run used more than 0.2 cores are left out when at least one
# clean round exists; of the rest, sorted by the figure, the ((n + 1) / 2)th (of two, the lower).
cmp_median_file() {
    local k f files clean= list n
    k=$(cmp_key "$1")
    files=$(ls "$RESULTS/$1.$2".r*.txt 2>/dev/null || true)
    [ -n "$files" ] || return 0
    for f in $files; do
        [ -n "$(cmp_get "$f" "$k")" ] || continue
        awk -F= '$1 == "cpu_not_this_run_cores" { found = 1; exit !($2 <= 0.2) } END { if (!found) exit 0 }' "$f" &&
            clean+="$f "
    done
    [ -n "$clean" ] || clean=$files
    list=$(for f in $clean; do v=$(cmp_get "$f" "$k"); [ -n "$v" ] && echo "$v $f"; done | sort -n -k1,1)
    [ -n "$list" ] || return 0
    n=$(echo "$list" | wc -l)
    echo "$list" | sed -n "$(((n + 1) / 2))p" | cut -d' ' -f2
}

# cmp_median SCENARIO SERVER [KEY]: KEY (default the figure) of the median round
cmp_median() {
    local f
    f=$(cmp_median_file "$1" "$2")
    [ -n "$f" ] || return 0
    cmp_get "$f" "${3:-$(cmp_key "$1")}"
}

# cmp_ratio A B: A / B with two decimals, empty when either is missing or B is 0
cmp_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) exit; printf "%.2f", a / b }'; }

# cmp_verdict VALUE OP LIMIT: "met", "not met" (VALUE OP LIMIT false) or "not measured"
# (VALUE empty); OP is >= or <=
cmp_verdict() {
    awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
        if (v == "") { print "not measured"; exit }
        ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 <= t + 0)
        print ok ? "met" : "not met" }'
}

# cmp_per_1000 FILE NAME: CPU seconds of program NAME (postgres, oversyncd, server, lighttpd,
# trivial_fcgi, client) per 1000 units (changes or requests) of the round: its cores over the
# sampled time (cpu_sampled_seconds) times the command's whole run (wall_seconds), over the
# units of that run. When the sampled time is the longer (a command of less than a second,
# sampled once after its end), the CPU it saw is all there was: cores times the sampled time.
# Empty without units or without a CPU measurement (machine_busy_cores); 0.0000 when the program
# used no measurable CPU.
cmp_per_1000() {
    local c w u t
    w=$(cmp_get "$1" wall_seconds)
    u=$(cmp_get "$1" units)
    t=$(cmp_get "$1" cpu_sampled_seconds)
    [ -n "$w" ] && [ -n "$u" ] && [ -n "$(cmp_get "$1" machine_busy_cores)" ] || return 0
    c=$(cmp_get "$1" "cpu_$2_cores")
    awk -v c="${c:-0}" -v w="$w" -v t="${t:-0}" -v u="$u" \
        'BEGIN { if (t + 0 > w + 0) w = t; if (u + 0 > 0) printf "%.4f", c * w / u * 1000 }'
}

# The targets of issue #11 ("What to build" and the table): name, how it is measured, the
# operator and the limit. cmp_targets prints one line per target and, last,
# "targets: N of M met"; a target whose scenario or server did not run is "not measured" and
# counts as not met.
CMP_TARGETS=(
    "upload-new|ratio|upload-new|>=|1.5"
    "upload-update|ratio|upload-update|>=|1.5"
    "upload-materialize|ratio|upload-materialize|>=|1.2"
    "download|ratio|download|>=|2"
    "schema-version vs trivial|of|schema-version trivial|>=|0.9"
    "upload-new vs floor|of|upload-new floor|>=|0.8"
    "PostgreSQL CPU per 1000 downloaded changes|pgcpu|download|<=|0.003"
)

# cmp_target_value KIND ARGS: the measured value a target is judged on (empty: not measured,
# also when its scenario is not one of SCENARIOS)
cmp_target_value() {
    local kind=$1 sc=${2%% *} other=${2#* } f
    [[ " ${SCENARIOS[*]} " == *" $sc "* ]] || return 0
    case $kind in
    ratio) cmp_ratio "$(cmp_median "$sc" oversyncd)" "$(cmp_median "$sc" b26b5a4)" ;;
    of) cmp_ratio "$(cmp_median "$sc" oversyncd)" "$(cmp_median "$sc" "$other")" ;;
    pgcpu)
        f=$(cmp_median_file "$sc" oversyncd)
        [ -n "$f" ] && cmp_per_1000 "$f" postgres ;;
    esac
}

# cmp_target_line TARGET: "name|value|shown target|verdict"
cmp_target_line() {
    local name kind args op lim v shown
    IFS='|' read -r name kind args op lim <<<"$1"
    v=$(cmp_target_value "$kind" "$args")
    case $kind in
    ratio) shown="oversyncd/b26b5a4 $op ${lim}x" ;;
    of) shown="oversyncd $op $(awk -v l="$lim" 'BEGIN { printf "%d", l * 100 + 0.5 }') % of ${args#* }" ;;
    pgcpu) shown="oversyncd $op $lim s" ;;
    esac
    echo "$name|$v|$shown|$(cmp_verdict "$v" "$op" "$lim")"
}

# cmp_target_of SCENARIO: the target line of the scenario's own row of the table
cmp_target_of() {
    local t
    for t in "${CMP_TARGETS[@]}"; do
        case $t in
        "$1|ratio|"*) cmp_target_line "$t"; return ;;
        esac
    done
    case $1 in schema-version) cmp_target_line "${CMP_TARGETS[4]}" ;; esac
}

# cmp_fmt_pct RATIO: "51 %" from 0.51 (empty stays empty)
cmp_fmt_pct() { [ -n "$1" ] && awk -v r="$1" 'BEGIN { printf "%d %%", r * 100 + 0.5 }' || true; }

# cmp_table: the table of medians and ratios, the target lines, the CPU split, peak RSS and every
# round with its load average; "targets: N of M met" last.
cmp_table() {
    local s srv v t name shown verdict f k met=0 total=0 sv
    printf '%-20s' scenario
    for srv in $SERVERS; do printf ' %10s' "$srv"; done
    printf ' %18s  %-30s %s\n' "oversyncd/b26b5a4" target met
    for s in "${SCENARIOS[@]}"; do
        sv=" $(cmp_servers_for "$s") "
        printf '%-20s' "$s"
        for srv in $SERVERS; do
            if [[ $sv == *" $srv "* ]]; then v=$(cmp_median "$s" "$srv"); printf ' %10s' "${v:-n/a}"; else printf ' %10s' -; fi
        done
        v=$(cmp_ratio "$(cmp_median "$s" oversyncd)" "$(cmp_median "$s" b26b5a4)")
        t=$(cmp_target_of "$s")
        IFS='|' read -r name _ shown verdict <<<"$t"
        case $s in
        schema-version) shown="see schema-version vs trivial"; verdict= ;;
        upload-materialize)
            [ -n "$v" ] && verdict+=" ($(awk -v r="$v" 'BEGIN { d = 1.5 - r; if (d <= 0) print "1.5x reached"; else printf "%.2f short of 1.5x", d }'))" ;;
        esac
        printf ' %18s  %-30s %s\n' "${v:-n/a}" "$shown" "$verdict"
    done
    echo "(medians; upload and download: changes/s, floor: rows/s; schema-version: requests/s)"
    echo
    echo "targets (issue #11):"
    for t in "${CMP_TARGETS[@]}"; do
        IFS='|' read -r name v shown verdict <<<"$(cmp_target_line "$t")"
        case $t in
        *"|of|"*) v=$(cmp_fmt_pct "$v") ;;
        *"|ratio|"*) v=${v:+${v}x} ;;
        *"|pgcpu|"*) v=${v:+$v s} ;;
        esac
        printf '  %-45s %-12s %-30s %s\n' "$name" "${v:-n/a}" "$shown" "$verdict"
        total=$((total + 1))
        [ "$verdict" = met ] && met=$((met + 1))
    done
    echo
    echo "CPU seconds per 1000 changes (schema-version: per 1000 requests) of the median round, by program; peak RSS of the server:"
    printf '  %-20s %-10s %9s %9s %9s %9s %9s  %s\n' scenario server postgres server lighttpd client "busy" "peak RSS"
    for s in "${SCENARIOS[@]}"; do
        for srv in $(cmp_servers_for "$s"); do
            f=$(cmp_median_file "$s" "$srv")
            [ -n "$f" ] || continue
            local own
            case $srv in
            oversyncd) own=$(cmp_per_1000 "$f" oversyncd) ;;
            trivial) own=$(cmp_per_1000 "$f" trivial_fcgi) ;;
            floor) own=- ;;
            *) own=$(cmp_per_1000 "$f" server) ;;
            esac
            local lt=-
            case $srv in oversyncd|trivial) lt=$(cmp_per_1000 "$f" lighttpd) ;; esac
            printf '  %-20s %-10s %9s %9s %9s %9s %9s  %s\n' "$s" "$srv" "$(cmp_per_1000 "$f" postgres)" "${own:-n/a}" \
                "${lt:-n/a}" "$(cmp_per_1000 "$f" client)" "$(cmp_get "$f" machine_busy_cores) cores" \
                "$(v=$(cmp_get "$f" peak_rss_MiB); [ -n "$v" ] && echo "$v MiB ($(cmp_get "$f" server_processes) processes)" || echo -)"
        done
    done
    echo
    echo "every round (figure; cores used by programs not of this run, > 0.2 = left out of the median; 1-minute load average before -> highest during -> after):"
    for s in "${SCENARIOS[@]}"; do
        k=$(cmp_key "$s")
        for srv in $(cmp_servers_for "$s"); do
            printf '  %-20s %-10s' "$s" "$srv"
            ls "$RESULTS/$s.$srv".r*.txt >/dev/null 2>&1 || printf ' (no round)'
            for f in $(ls "$RESULTS/$s.$srv".r*.txt 2>/dev/null | sort -V); do
                printf ' r%s %s (others %s; load %s -> %s -> %s);' "$(cmp_get "$f" round)" "$(cmp_get "$f" "$k")" \
                    "$(cmp_get "$f" cpu_not_this_run_cores)" "$(cmp_get "$f" loadavg_before | cut -d' ' -f1)" \
                    "$(v=$(cmp_get "$f" loadavg_max_during); echo "${v:-?}")" "$(cmp_get "$f" loadavg_after | cut -d' ' -f1)"
            done
            echo
        done
    done
    echo
    echo "targets: $met of $total met"
}
