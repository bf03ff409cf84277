# Shared by the compatibility oracles tests/compat/run-<commit>.sh: each runs the client programs
# and client tests of one go-oversync source archive (shared/upstream/, never part of this
# project) against the freshly built ./oversyncd behind lighttpd, on a throwaway PostgreSQL.
#
# A runner sets COMPAT_NAME (the prefix of its summary line) and COMPAT_COMMIT (and, before
# sourcing, whatever of the settings below differs for its archive; COMPAT_NEEDS_SERVER=0 when it
# starts no oversyncd behind lighttpd), sources this file, and
# calls, in order:
#   compat_stage2_dispatch       first of all: inside tests/pg.sh, run the stage-2 function
#   compat_setup "$@"            options, the work directory, the Go toolchain, the archive
#   compat_unpack                the archive into $COMPAT_WORK/src (prints the tree's path)
#   compat_go_build LABEL DIR GO-ARGS...
#                                "go build"/"go test -c" in DIR; an unreachable proxy skips
#   compat_in_pg FUNCTION        runs the script again inside tests/pg.sh (a PostgreSQL of its
#                                own), where compat_stage2_dispatch calls FUNCTION
#   compat_finish                the summary line and the exit status
# and in FUNCTION: compat_createdb, compat_start_oversyncd (or its two halves
# compat_prepare_oversyncd and compat_run_oversyncd), compat_spawn, compat_stop_servers,
# compat_result PASS|FAIL|SKIP|XFAIL|XPASS NAME [DETAIL]. Results go to $COMPAT_WORK/results,
# which both stages share. compat_skip may be called in either stage.
#
# Exit status (automake's convention): 0 all checks passed, 1 a check failed, 77 skipped (no Go
# toolchain, no archive, no module proxy, no lighttpd, or whatever the runner skips for), 99 the
# harness itself broke.
#
# Plain POSIX sh.

COMPAT_GO_MIN_MINOR=${COMPAT_GO_MIN_MINOR:-24}          # go.mod of 78e1be6: go 1.24 (1f1118f: 1.25)
COMPAT_GO_BOOTSTRAP=${COMPAT_GO_BOOTSTRAP:-go1.24.5}     # its toolchain line
COMPAT_JWT_SECRET=${COMPAT_JWT_SECRET:-your-secret-key-change-in-production}  # mobile_flow's
COMPAT_SCENARIO_TIMEOUT=${COMPAT_SCENARIO_TIMEOUT:-120}  # seconds, one client program run (the longest takes ~8 s)

compat_here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(cd "$compat_here/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
top_srcdir=$(cd "$top_srcdir" && pwd)
top_builddir=$(cd "$top_builddir" && pwd)

compat_log() { echo "$COMPAT_NAME: $*"; }
compat_die() { echo "$COMPAT_NAME: ERROR: $*" >&2; exit 99; }

# In stage 2 (inside pg.sh) the reason goes to a file instead, for stage 1 to say (compat_in_pg).
compat_skip() {
    if [ "${COMPAT_STAGE:-1}" = 2 ] && [ -n "${COMPAT_WORK:-}" ]; then
        echo "$*" >"$COMPAT_WORK/skip-reason"
    else
        echo "$COMPAT_NAME: SKIPPED: $*"
    fi
    exit 77
}

compat_now() { date +%s; }

# ---------------------------------------------------------------------------------- options

COMPAT_ONLY_HELP=${COMPAT_ONLY_HELP:-'a scenario name, or "oversqlite"'}
compat_usage() {
    cat <<EOF
usage: $0 [--upstream DIR] [--server oversyncd|reference] [--keep] [--only NAME]...

  --upstream DIR   where go-oversync-$COMPAT_COMMIT.tar.gz is (default: \$COMPAT_UPSTREAM, else
                   ../shared/upstream beside the checkout)
  --server S       oversyncd (default): the freshly built ./oversyncd behind lighttpd;
                   reference: the archive's own example server instead (on 127.0.0.1:8080,
                   which must be free), to tell oversyncd's failures from the oracle's own
  --only NAME      run only this check (repeatable): $COMPAT_ONLY_HELP
  --keep           keep the work directory (logs, client databases) and print its path
EOF
}

if [ -z "${COMPAT_STAGE2:-}" ]; then   # stage 2 inherits them from stage 1
    COMPAT_SERVER=oversyncd
    COMPAT_KEEP=0
    COMPAT_ONLY=
fi
compat_setup() {
    COMPAT_UPSTREAM=${COMPAT_UPSTREAM:-$(cd "$top_srcdir/.." && pwd)/shared/upstream}
    while [ $# -gt 0 ]; do
        case $1 in
        --upstream) [ $# -ge 2 ] || { compat_usage >&2; exit 2; }; COMPAT_UPSTREAM=$2; shift ;;
        --upstream=*) COMPAT_UPSTREAM=${1#*=} ;;
        --server) [ $# -ge 2 ] || { compat_usage >&2; exit 2; }; COMPAT_SERVER=$2; shift ;;
        --server=*) COMPAT_SERVER=${1#*=} ;;
        --only) [ $# -ge 2 ] || { compat_usage >&2; exit 2; }; COMPAT_ONLY="$COMPAT_ONLY $2"; shift ;;
        --only=*) COMPAT_ONLY="$COMPAT_ONLY ${1#*=}" ;;
        --keep) COMPAT_KEEP=1 ;;
        -h|--help) compat_usage; exit 0 ;;
        *) compat_usage >&2; exit 2 ;;
        esac
        shift
    done
    case $COMPAT_SERVER in
    oversyncd|reference) ;;
    *) echo "--server must be oversyncd or reference" >&2; exit 2 ;;
    esac
    COMPAT_ARCHIVE=$COMPAT_UPSTREAM/go-oversync-$COMPAT_COMMIT.tar.gz
    [ -f "$COMPAT_ARCHIVE" ] || compat_skip "$COMPAT_ARCHIVE not found (the go-oversync archives live in shared/upstream/ beside the checkout; --upstream DIR names another place)"

    compat_find_go

    # A runner that starts no server (COMPAT_NEEDS_SERVER=0: check-bundle-schema.sh) needs neither
    # the program nor lighttpd and curl.
    if [ "$COMPAT_SERVER" = oversyncd ] && [ "${COMPAT_NEEDS_SERVER:-1}" = 1 ]; then
        [ -x "$top_builddir/oversyncd" ] || compat_die "$top_builddir/oversyncd is not built"
        COMPAT_LIGHTTPD=${LIGHTTPD:-$(PATH=$PATH:/usr/sbin:/usr/local/sbin:/sbin command -v lighttpd)} ||
            compat_skip "lighttpd not found (package lighttpd)"
        command -v curl >/dev/null 2>&1 || compat_skip "curl not found (package curl)"
    fi
    command -v psql >/dev/null 2>&1 || compat_skip "psql not found (package postgresql-client)"

    COMPAT_WORK=$(mktemp -d "${TMPDIR:-/tmp}/oversyncd-compat.XXXXXX") || compat_die "mktemp failed"
    chmod 755 "$COMPAT_WORK"   # the workers and lighttpd may run as www-data
    mkdir -p "$COMPAT_WORK/logs" "$COMPAT_WORK/bin"
    : >"$COMPAT_WORK/results"
    trap compat_cleanup EXIT
    trap 'exit 1' INT TERM
    COMPAT_T0=$(compat_now)
    export COMPAT_WORK COMPAT_NAME COMPAT_COMMIT COMPAT_SERVER COMPAT_ONLY COMPAT_LIGHTTPD COMPAT_KEEP
}

compat_cleanup() {
    rc=$?
    compat_stop_servers
    compat_forget_client_files
    if [ -n "${COMPAT_WORK:-}" ] && [ "${COMPAT_STAGE:-1}" = 1 ]; then
        if [ "$COMPAT_KEEP" = 1 ]; then
            echo "$COMPAT_NAME: work directory kept: $COMPAT_WORK" >&2
        else
            chmod -R u+w "$COMPAT_WORK" 2>/dev/null   # in case a copied tree is read-only
            rm -rf "$COMPAT_WORK"
        fi
    fi
    exit $rc
}

# Is this check selected by --only?
compat_selected() {
    [ -z "$COMPAT_ONLY" ] && return 0
    for n in $COMPAT_ONLY; do [ "$n" = "$1" ] && return 0; done
    return 1
}

# ----------------------------------------------------------------------------- Go toolchain

# go1.26.8 -> 26 (the minor version); empty if unknown
compat_go_minor() {
    v=$("$1" env GOVERSION 2>/dev/null) || v=$("$1" version 2>/dev/null | awk '{print $3}')
    case $v in
    go1.*) v=${v#go1.}; echo "${v%%[!0-9]*}" ;;
    esac
}

# Sets GO to a toolchain of at least go1.$COMPAT_GO_MIN_MINOR, or skips. An older go (Debian
# 12's golang-go is 1.19, which knows no GOTOOLCHAIN) fetches the $COMPAT_GO_BOOTSTRAP toolchain
# as the module golang.org/toolchain from the module proxy, kept in a stable cache directory.
compat_find_go() {
    GO=${GO:-}
    if [ -z "$GO" ]; then
        GO=$(command -v go 2>/dev/null) || GO=
        [ -z "$GO" ] && [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go
    fi
    [ -n "$GO" ] || compat_skip "no Go toolchain (no go in PATH, no /usr/local/go/bin/go; .ci/run installs Debian's golang-go)"
    minor=$(compat_go_minor "$GO")
    [ -n "$minor" ] || compat_skip "cannot tell the version of $GO"
    # The module and build caches live under $HOME (~/go/pkg/mod, ~/.cache/go-build), kept
    # between runs so that a second run downloads and compiles nothing.
    if [ -z "${HOME:-}" ]; then
        HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
        export HOME
    fi
    # The archives' go.mod says "toolchain go1.24.5": a newer local go must not try to switch.
    GOTOOLCHAIN=local
    GOFLAGS=${GOFLAGS:--buildvcs=false}
    export GOTOOLCHAIN GOFLAGS
    if [ "$minor" -lt "$COMPAT_GO_MIN_MINOR" ]; then
        compat_bootstrap_go || compat_skip "$GO is go1.$minor, older than go1.$COMPAT_GO_MIN_MINOR, and the $COMPAT_GO_BOOTSTRAP toolchain could not be fetched from the Go module proxy ($COMPAT_BOOTSTRAP_WHY)"
    fi
    GOROOT=$("$GO" env GOROOT)
    export GO GOROOT
    PATH=$(dirname "$GO"):$PATH
    export PATH
    compat_log "Go toolchain: $("$GO" version) ($GO)"
}

compat_bootstrap_go() {
    cache=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/oversyncd-compat
    case $(uname -m) in
    x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; i?86) arch=386 ;; *) arch=$(uname -m) ;;
    esac
    dest=$cache/$COMPAT_GO_BOOTSTRAP.linux-$arch
    if [ ! -x "$dest/bin/go" ]; then
        mod=golang.org/toolchain@v0.0.1-$COMPAT_GO_BOOTSTRAP.linux-$arch
        compat_log "fetching the $COMPAT_GO_BOOTSTRAP toolchain ($mod) with $("$GO" version)"
        mkdir -p "$cache" || { COMPAT_BOOTSTRAP_WHY="cannot create $cache"; return 1; }
        # Outside any module; GOFLAGS of a newer go may not parse here.
        dir=$(cd "$cache" && env -u GOROOT GOFLAGS= GO111MODULE=on "$GO" mod download -json "$mod" 2>"$cache/download.err" |
            sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
        if [ -z "$dir" ] || [ ! -f "$dir/bin/go" ]; then
            COMPAT_BOOTSTRAP_WHY=$(grep -v '^[[:space:]]*$' "$cache/download.err" | head -n 3 | tr '\n' ' ')
            return 1
        fi
        # The module cache is read-only and drops the executable bits: copy, then restore them.
        rm -rf "$dest.tmp" && cp -R "$dir" "$dest.tmp" && chmod -R u+w "$dest.tmp" &&
            chmod +x "$dest.tmp"/bin/* "$dest.tmp"/pkg/tool/*/* && rm -rf "$dest" && mv "$dest.tmp" "$dest" ||
            { COMPAT_BOOTSTRAP_WHY="cannot copy $dir to $dest"; return 1; }
    fi
    unset GOROOT
    GO=$dest/bin/go
    "$GO" version >/dev/null 2>&1 || { COMPAT_BOOTSTRAP_WHY="$GO does not run"; return 1; }
}

# ------------------------------------------------------------------------------ the archive

compat_unpack() {
    mkdir -p "$COMPAT_WORK/src"
    tar -xzf "$COMPAT_ARCHIVE" -C "$COMPAT_WORK/src" || compat_die "cannot unpack $COMPAT_ARCHIVE"
    [ -f "$COMPAT_WORK/src/go-oversync/go.mod" ] || compat_die "$COMPAT_ARCHIVE has no go-oversync/go.mod"
    echo "$COMPAT_WORK/src/go-oversync"
}

# A failed "go build" whose messages say the module proxy could not be reached skips the suite;
# any other failure is the build's.
compat_proxy_unreachable() {
    grep -Eq 'dial tcp|no such host|connection refused|i/o timeout|TLS handshake timeout|network is unreachable|proxyconnect|Temporary failure in name resolution|server misbehaving|context deadline exceeded|GOPROXY=off|module lookup disabled' "$1"
}

# compat_go_build LABEL DIR GO-ARGS...: runs go in DIR; output in logs/build-LABEL.log.
compat_go_build() {
    label=$1 dir=$2
    shift 2
    log=$COMPAT_WORK/logs/build-$label.log
    t=$(compat_now)
    if (cd "$dir" && "$GO" "$@") >"$log" 2>&1; then
        compat_log "built $label in $(($(compat_now) - t))s"
        return 0
    fi
    if compat_proxy_unreachable "$log"; then
        compat_skip "the Go module proxy ($("$GO" env GOPROXY)) cannot be reached: $(grep -E 'dial tcp|no such host|refused|timeout|unreachable|proxyconnect|resolution|misbehaving|deadline|GOPROXY=off|lookup disabled' "$log" | head -n 1)"
    fi
    compat_result FAIL "build:$label" "go $* failed in $dir"
    sed 's/^/    /' "$log" | tail -n 30
    return 1
}

# ------------------------------------------------------------------------------- results

# compat_result PASS|FAIL|SKIP|XFAIL|XPASS NAME [DETAIL]
compat_result() {
    echo "$1 $2${3:+ $3}"
    echo "$1 $2" >>"$COMPAT_WORK/results"
}

compat_finish() {
    passed=$(grep -c '^PASS ' "$COMPAT_WORK/results")
    failed=$(grep -c -E '^(FAIL|XPASS) ' "$COMPAT_WORK/results")
    xfailed=$(grep -c '^XFAIL ' "$COMPAT_WORK/results")
    skipped=$(grep -c '^SKIP ' "$COMPAT_WORK/results")
    if [ "${COMPAT_NEEDS_SERVER:-1}" = 1 ]; then
        compat_log "server $COMPAT_SERVER, $(($(compat_now) - COMPAT_T0))s in all"
    else
        compat_log "$(($(compat_now) - COMPAT_T0))s in all"
    fi
    if [ "$failed" -ne 0 ]; then
        names=$(grep -E '^(FAIL|XPASS) ' "$COMPAT_WORK/results" | cut -d' ' -f2 | tr '\n' ' ' | sed 's/ $//')
        echo "$COMPAT_NAME: $failed of $((passed + failed + xfailed)) checks failed: $names"
        exit 1
    fi
    if [ $((passed + xfailed)) -eq 0 ]; then
        echo "$COMPAT_NAME: no check ran"
        exit 1
    fi
    [ "$xfailed" -ne 0 ] && compat_log "$xfailed known failures (XFAIL above), not counted as passed"
    [ "$skipped" -ne 0 ] && compat_log "$skipped checks skipped (SKIP above), not counted as passed"
    echo "$COMPAT_NAME: $passed checks passed"
    exit 0
}

# ------------------------------------------------------------------ the PostgreSQL stage

# compat_in_pg FUNCTION: re-runs this script inside tests/pg.sh, which calls FUNCTION there.
#
# The clients of the archives assume a server at http://localhost:8080 in places (some
# mobile_flow scenarios ignore --server). As root, stage 2 therefore runs in a network namespace
# of its own, where lighttpd takes 127.0.0.1:8080 without disturbing anything on the machine
# (PostgreSQL is reached on its unix socket, which is no network's). Elsewhere lighttpd takes
# 8080 if it is free, else another port, and the checks that need 8080 are skipped.
compat_in_pg() {
    COMPAT_STAGE2=$1
    COMPAT_NETNS=
    # COMPAT_USE_NETNS=no keeps the machine's network (to try the fallback)
    if [ "${COMPAT_USE_NETNS:-auto}" != no ] && [ "$(id -u)" = 0 ] &&
        command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 &&
        unshare --net sh -c 'ip link set lo up' 2>/dev/null; then
        COMPAT_NETNS=1
    fi
    export COMPAT_STAGE2 COMPAT_NETNS GO GOTOOLCHAIN GOFLAGS
    if [ -n "$COMPAT_NETNS" ]; then
        compat_log "servers and clients run in a network namespace of their own (loopback only)"
        unshare --net sh -c 'ip link set lo up && exec sh "$1" run sh "$2"' - "$top_srcdir/tests/pg.sh" "$0"
    else
        sh "$top_srcdir/tests/pg.sh" run sh "$0"
    fi
    rc=$?
    if [ $rc -eq 77 ] && [ -f "$COMPAT_WORK/skip-reason" ]; then
        compat_skip "$(cat "$COMPAT_WORK/skip-reason")"
    fi
    [ $rc -eq 0 ] || compat_result FAIL harness "the servers could not be started or the run broke off (see above)"
}

# Is TCP port $1 on 127.0.0.1 free? (a connect is refused: curl's exit status 7)
compat_port_free() {
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/" 2>/dev/null
    [ $? -eq 7 ]
}

# Called at the top of the runner: inside pg.sh, run the stage-2 function and exit.
compat_stage2_dispatch() {
    [ -n "${COMPAT_STAGE2:-}" ] || return 0
    COMPAT_STAGE=2
    trap 'compat_stop_servers; compat_forget_client_files' EXIT
    trap 'exit 1' INT TERM
    compat_remember_client_files
    "$COMPAT_STAGE2"
    exit $?
}

# compat_createdb NAME: a new database in pg.sh's cluster; prints its libpq connection string.
compat_createdb() {
    psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $1" >/dev/null ||
        compat_die "cannot create the database $1"
    echo "host=$PGHOST port=${PGPORT:-5432} user=${PGUSER:-postgres} dbname=$1 sslmode=disable"
}

compat_random_port() {
    echo $((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 30000))
}

COMPAT_PIDS=
# compat_spawn LOG PROGRAM ARGS...: in a session of its own (its workers die with it); pid in $!
compat_spawn() {
    log=$1
    shift
    setsid "$@" </dev/null >>"$log" 2>&1 &
    COMPAT_PIDS="$! $COMPAT_PIDS"
}

compat_stop_servers() {
    for p in $COMPAT_PIDS; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in $COMPAT_PIDS; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL -- "-$p" 2>/dev/null
        kill -KILL "$p" 2>/dev/null
    done
    COMPAT_PIDS=
}

# compat_start_oversyncd DBURL SQLFILE CONFTABLES: loads the business schema, starts oversyncd
# (its own master and workers on a unix socket) and lighttpd in front of it, configured from
# lighttpd-example/ like the end-to-end tests; sets COMPAT_URL. A configuration that
# oversyncd --check-config refuses breaks the harness (exit 99).
compat_start_oversyncd() {
    compat_prepare_oversyncd "$@" ||
        { cat "$COMPAT_WORK/logs/check-config.log"; compat_die "oversyncd --check-config refused $COMPAT_WORK/srv/oversyncd.conf"; }
    compat_run_oversyncd "$1"
}

# compat_write_oversyncd_conf CONFTABLES FILE: the configuration: [server] (a unix socket in
# $COMPAT_WORK/srv/run, four workers), [auth] (HS256 JWTs), [sync] schema_version = 1, then
# CONFTABLES as it is (lines before its first section header add to [sync]).
compat_write_oversyncd_conf() {
    tables=$1 out=$2
    srv=$COMPAT_WORK/srv
    mkdir -p "$srv/run" "$srv/www" "$srv/log"
    chmod 755 "$srv" "$srv/run" "$srv/www"
    root=
    if [ "$(id -u)" = 0 ] && id www-data >/dev/null 2>&1; then
        root=1
        chown www-data: "$srv/log"
    fi
    {
        echo "[server]"
        echo "listen = unix:$srv/run/oversyncd.sock"
        echo "pid_file = $srv/run/oversyncd.pid"
        echo "workers = 4"
        echo "log_level = info"
        if [ -n "$root" ]; then
            echo "socket_mode = 0660"
            echo "group = www-data"
            echo "user = www-data"
        fi
        echo "[auth]"
        echo "mode = jwt"
        echo "jwt_algorithms = HS256"
        echo "[sync]"
        echo "schema_version = 1"
        cat "$tables"
    } >"$out"
    chmod 644 "$out"
}

# compat_prepare_oversyncd DBURL SQLFILE CONFTABLES: loads the business schema into DBURL,
# writes $COMPAT_WORK/srv/oversyncd.conf and has oversyncd --check-config it against DBURL;
# false if it refuses (its words in $COMPAT_WORK/logs/check-config.log).
compat_prepare_oversyncd() {
    db=$1 sql=$2 tables=$3
    psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$sql" >"$COMPAT_WORK/logs/schema.log" 2>&1 ||
        { cat "$COMPAT_WORK/logs/schema.log"; compat_die "cannot load $sql"; }
    compat_write_oversyncd_conf "$tables" "$COMPAT_WORK/srv/oversyncd.conf"
    DATABASE_URL=$db JWT_SECRET=$COMPAT_JWT_SECRET "$top_builddir/oversyncd" -c "$COMPAT_WORK/srv/oversyncd.conf" --check-config \
        >"$COMPAT_WORK/logs/check-config.log" 2>&1
}

# compat_run_oversyncd DBURL: starts oversyncd with the configuration compat_prepare_oversyncd
# wrote, and lighttpd in front of it; sets COMPAT_URL. Can run again after compat_stop_servers.
compat_run_oversyncd() {
    db=$1
    srv=$COMPAT_WORK/srv
    rm -f "$srv/run/oversyncd.sock"
    compat_spawn "$COMPAT_WORK/logs/oversyncd.log" env DATABASE_URL="$db" JWT_SECRET="$COMPAT_JWT_SECRET" \
        "$top_builddir/oversyncd" -c "$srv/oversyncd.conf"
    i=0
    while [ ! -S "$srv/run/oversyncd.sock" ]; do
        i=$((i + 1))
        [ $i -gt 300 ] && { tail -n 30 "$COMPAT_WORK/logs/oversyncd.log"; compat_die "oversyncd did not create its socket"; }
        sleep 0.1
    done

    shipped=$top_srcdir/lighttpd-example/lighttpd.conf
    grep -q 'server.port = 8080' "$shipped" && grep -q '/run/oversyncd/oversyncd.sock' "$shipped" ||
        compat_die "$shipped no longer has server.port = 8080 and /run/oversyncd/oversyncd.sock, which this test substitutes"
    tries=0
    while :; do
        tries=$((tries + 1))
        if [ $tries = 1 ] && compat_port_free 8080; then
            port=8080   # what the archives' clients assume where they ignore --server
        else
            port=$(compat_random_port)
        fi
        sed -e "s|/run/oversyncd|$srv/run|g" -e "s|/var/www/html|$srv/www|g" \
            -e "s|/var/log/lighttpd|$srv/log|g" -e "s|server.port = 8080|server.port = $port|" \
            "$shipped" >"$srv/lighttpd.conf"
        rm -f "$srv/log/oversyncd-error.log"
        compat_spawn "$COMPAT_WORK/logs/lighttpd.out" "$COMPAT_LIGHTTPD" -D -f "$srv/lighttpd.conf"
        lpid=$!
        i=0
        while ! grep -q 'server started' "$srv/log/oversyncd-error.log" 2>/dev/null && kill -0 "$lpid" 2>/dev/null && [ $i -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        grep -q 'server started' "$srv/log/oversyncd-error.log" 2>/dev/null && break
        if [ $tries -lt 5 ] && cat "$COMPAT_WORK/logs/lighttpd.out" "$srv/log/oversyncd-error.log" 2>/dev/null | grep -q 'Address already in use'; then
            continue
        fi
        cat "$COMPAT_WORK/logs/lighttpd.out" "$srv/log/oversyncd-error.log" 2>/dev/null | tail -n 20
        compat_die "lighttpd did not start"
    done
    COMPAT_URL=http://127.0.0.1:$port
    compat_wait_health "$COMPAT_URL/health" || {
        tail -n 30 "$COMPAT_WORK/logs/oversyncd.log"
        compat_die "GET $COMPAT_URL/health did not answer 200"
    }
    compat_log "oversyncd $("$top_builddir/oversyncd" --version 2>&1 | head -n 1) behind lighttpd at $COMPAT_URL"
}

compat_wait_health() {
    i=0
    while [ $i -lt 300 ]; do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null) && [ "$code" = 200 ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# ------------------------------------------------------- client files outside the work dir

# mobile_flow keeps its SQLite files in /tmp whatever TMPDIR says: remove the ones this run made
# (and the "persistent" ones of an earlier run, which would carry another server's cursors).
compat_remember_client_files() {
    rm -f /tmp/mobile_flow_persistent_* 2>/dev/null
    ls -d /tmp/mobile_flow_* 2>/dev/null | sort >"$COMPAT_WORK/client-files.before"
}

compat_forget_client_files() {
    [ -n "${COMPAT_WORK:-}" ] && [ -f "$COMPAT_WORK/client-files.before" ] || return 0
    ls -d /tmp/mobile_flow_* 2>/dev/null | sort >"$COMPAT_WORK/client-files.after"
    if [ "$COMPAT_KEEP" = 1 ]; then
        mkdir -p "$COMPAT_WORK/client-files"
        comm -13 "$COMPAT_WORK/client-files.before" "$COMPAT_WORK/client-files.after" |
            while read -r f; do mv "$f" "$COMPAT_WORK/client-files/" 2>/dev/null; done
    else
        comm -13 "$COMPAT_WORK/client-files.before" "$COMPAT_WORK/client-files.after" |
            while read -r f; do rm -f "$f"; done
    fi
    rm -f "$COMPAT_WORK/client-files.before"
}
