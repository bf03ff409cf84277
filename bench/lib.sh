# Shared by bench/run and bench/compare (sourced, bash): stopping a process, and measuring the
# machine (CPU per program by process tree, waiting for a quiet machine).
# The caller sets nothing; CLK_TCK is set here.

stop_pid() {   # stop_pid PID: SIGTERM, wait up to 15 s, then SIGKILL
    local pid=$1 i
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}


CLK_TCK=$(getconf CLK_TCK)

cpu_snap() {   # cpu_snap FILE: machine busy/idle ticks, and "pid comm ppid ticks start" of every process
    local line pid comm rest
    {
        read -r _ u n s i w irq sirq st _ </proc/stat
        echo "TOTAL busy $((u + n + s + irq + sirq + st)) idle $((i + w))"
        for f in /proc/[0-9]*/stat; do
            read -r line 2>/dev/null <"$f" || continue
            pid=${line%% *}
            comm=${line#*(}
            comm=${comm%%)*}
            rest=${line##*) }
            # shellcheck disable=SC2086
            set -- $rest
            echo "$pid ${comm// /_} $2 $((${12} + ${13})) ${20}"
        done
    } >"$1"
}

# Other engineers' tests may run on this machine at the same time: CPU is attributed by process
# tree to this run's programs (PostgreSQL, oversyncd, lighttpd, the trivial responder, the load
# generator, and bench/run itself: "bench"); kernel threads are "kernel", everything else is
# "foreign" load.
cpu_report() {   # cpu_report BEFORE AFTER SECONDS ROOTS ("name=pid ...")
    awk -v secs="$3" -v hz="$CLK_TCK" -v roots="$4" '
        BEGIN { n = split(roots, r, " "); for (j = 1; j <= n; j++) { split(r[j], kv, "="); if (kv[2] != "") root[kv[2]] = kv[1] } }
        FNR == NR { if ($1 == "TOTAL") { b0 = $3; i0 = $5 } else before[$1 " " $5] = $4; next }
        $1 == "TOTAL" { busy = $3 - b0; idle = $5 - i0; next }
        { k = $1 " " $5; d[$1] = $4 - ((k in before) ? before[k] : 0); ppid[$1] = $3; comm[$1] = $2 }
        function owner(p,   guard) {
            for (guard = 0; guard < 64 && p > 1; guard++) { if (p in root) return root[p]; if (!(p in ppid)) break; p = ppid[p] }
            return ""
        }
        END {
          if (secs <= 0) exit
          for (p in d) {
            if (d[p] <= 0) continue
            name = owner(p)
            if (name == "") name = (ppid[p] == 2 || comm[p] ~ /^(kworker|ksoftirqd|kswapd|rcu_|migration|jbd2)/) ? "kernel" : "foreign"
            used[name] += d[p]
            if (name == "foreign") foreign[comm[p]] += d[p]
          }
          printf "machine_busy_cores=%.2f\n", busy / hz / secs
          printf "machine_idle_cores=%.2f\n", idle / hz / secs
          n = split("postgres oversyncd server trivial_fcgi lighttpd client bench kernel foreign", order, " ")
          for (j = 1; j <= n; j++) if (used[order[j]] > 0) printf "cpu_%s_cores=%.2f\n", order[j], used[order[j]] / hz / secs
          for (o in foreign) if (foreign[o] / hz / secs >= 0.01) printf "foreign_%s_cores=%.2f\n", o, foreign[o] / hz / secs
          # busy time no snapshot saw: processes that started and ended between two snapshots
          # (other users compilers and test runs), plus interrupt time
          for (name in used) total += used[name]
          printf "cpu_unattributed_cores=%.2f\n", (busy - total) / hz / secs
          printf "cpu_not_this_run_cores=%.2f\n", (busy - total + used["foreign"]) / hz / secs
        }' "$1" "$2"
}

wait_quiet() {   # wait_quiet [SECONDS]: up to SECONDS (90) until the machine is nearly idle (others' tests may be running)
    local i b0 i0 b1 i1 busy
    for i in $(seq "${1:-90}"); do
        read -r _ u n s id w irq sirq st _ </proc/stat; b0=$((u + n + s + irq + sirq + st))
        sleep 1
        read -r _ u n s id w irq sirq st _ </proc/stat; b1=$((u + n + s + irq + sirq + st))
        busy=$(awk -v b="$((b1 - b0))" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", b / hz }')
        if awk -v x="$busy" 'BEGIN { exit !(x < 0.15) }'; then
            echo "$busy"
            return
        fi
    done
    echo "$busy"
}

