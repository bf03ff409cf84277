#!/bin/sh
# systemd socket activation: oversyncd started by systemd-socket-activate (the socket on fd 3,
# LISTEN_PID/LISTEN_FDS set, as a .socket unit does) serves FastCGI on that socket with its own
# master and workers, answers /health and an authenticated /sync/schema-version, reloads on
# SIGHUP and stops cleanly on SIGTERM, leaving systemd's socket file alone.
#
# Runs inside tests/pg.sh (DATABASE_URL names its PostgreSQL); tests/run-test.sh does that for
# every test under e2e/. By hand, from the build directory:
#   top_builddir=$PWD sh tests/pg.sh run sh tests/e2e/check-socket-activation.sh
set -u

skip() { echo "SKIP: $*"; exit 77; }
command -v systemd-socket-activate >/dev/null 2>&1 || skip "systemd-socket-activate not found (package systemd)"
cgi_fcgi=$(command -v cgi-fcgi) || skip "cgi-fcgi not found (package libfcgi-bin)"
[ -n "${DATABASE_URL:-}" ] || { echo "DATABASE_URL is not set: run this test through tests/pg.sh" >&2; exit 99; }

top_builddir=${top_builddir:-.}
oversyncd=$(cd "$top_builddir" && pwd)/oversyncd
[ -x "$oversyncd" ] || { echo "$oversyncd not built" >&2; exit 99; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/oversyncd-activate.XXXXXX") || exit 99
chmod 755 "$tmp"       # the workers may run as www-data
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        pkill -KILL -P "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

. "$(cd "${top_srcdir:-.}" && pwd)/tests/checks.sh"
finish() {
    checks_end "socket activation" "$tmp/oversyncd.log"
}

sock=$tmp/oversyncd.sock
conf=$tmp/oversyncd.conf
{
    echo "[server]"
    echo "workers = 2"
    echo "log_level = debug"
    # left over from running oversyncd with its own socket: ignored under socket activation, and
    # the socket file, which belongs to systemd, must survive oversyncd's stop
    echo "listen = unix:$sock"
    # as root the master refuses to run workers without an unprivileged user
    [ "$(id -u)" = 0 ] && echo "user = www-data"
    echo "[sync]"
    echo "schema_version = 7"
} >"$conf"
chmod 644 "$conf"

JWT_SECRET=socket-activation-test-secret-0123456789abcdef
export JWT_SECRET DATABASE_URL

# One FastCGI request: METHOD PATH [AUTHORIZATION]; prints the answer (headers and body).
fcgi() {
    env -i REQUEST_METHOD="$1" SCRIPT_NAME="$2" REQUEST_URI="$2" SERVER_PROTOCOL=HTTP/1.1 \
        SERVER_NAME=localhost ${3:+HTTP_AUTHORIZATION="$3"} \
        timeout 30 "$cgi_fcgi" -bind -connect "$sock" </dev/null 2>&1 | tr -d '\r'
}
has() { # TEXT PATTERN: TEXT contains a line matching the grep pattern
    printf '%s\n' "$1" | grep -q -- "$2"
}

systemd-socket-activate -l "$sock" -E DATABASE_URL -E JWT_SECRET \
    "$oversyncd" -c "$conf" >"$tmp/oversyncd.log" 2>&1 &
pid=$!
# the socket exists before oversyncd does; the first connection starts it
i=0
while [ ! -S "$sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
check "systemd-socket-activate created the socket" test -S "$sock"
[ -S "$sock" ] || finish

# This first request waits in the socket's backlog while oversyncd starts.
out=$(fcgi GET /health)
check "GET /health answers 200 (got: $out)" has "$out" '^Status: 200'
check "GET /health answers {\"status\":\"healthy\",\"service\":\"oversyncd\"}" has "$out" '{"status":"healthy","service":"oversyncd"}'
check "oversyncd logs that it serves the socket passed by systemd" \
    grep -q 'using the socket passed by systemd (fd 3); \[server\] listen is ignored' "$tmp/oversyncd.log"
check "systemd-socket-activate became oversyncd (same pid)" \
    sh -c 'tr "\0" " " </proc/$1/cmdline | grep -q "oversyncd -c"' - "$pid"

if [ "$(id -u)" = 0 ]; then
    workers=$(ps -o user= --ppid "$pid" | sort -u | tr '\n' ' ')
    check "the workers run as www-data (got: $workers)" test "$workers" = "www-data "
fi

out=$(fcgi GET /sync/schema-version)
check "GET /sync/schema-version without a token answers 401 (got: $out)" has "$out" '^Status: 401'

token=$("$oversyncd" token -c "$conf" --user alice --device laptop) || token=
check "oversyncd token prints a token" test -n "$token"
out=$(fcgi GET /sync/schema-version "Bearer $token")
check "GET /sync/schema-version with a token answers 200 (got: $out)" has "$out" '^Status: 200'
check "GET /sync/schema-version answers the configured version 7" has "$out" '"schema_version": *7'

# SIGHUP: a reload replaces the workers; the socket keeps serving.
sed 's/^schema_version = 7$/schema_version = 8/' "$conf" >"$conf.new" && mv "$conf.new" "$conf"
kill -HUP "$pid"
i=0
while ! grep -q 'reload complete' "$tmp/oversyncd.log" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
check "SIGHUP reloads (log says reload complete)" grep -q 'reload complete' "$tmp/oversyncd.log"
out=$(fcgi GET /sync/schema-version "Bearer $token")
check "after the reload schema-version answers 8 (got: $out)" has "$out" '"schema_version": *8'

# SIGTERM: a clean stop, status 0; the socket file belongs to systemd and stays.
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 "$pid" 2>/dev/null; then
    fail "oversyncd still runs 15 s after SIGTERM"
else
    wait "$pid"
    rc=$?
    pid=
    check "oversyncd exits with status 0 after SIGTERM (got $rc)" test "$rc" -eq 0
fi
check "oversyncd logs that it stopped" grep -q 'stopped' "$tmp/oversyncd.log"
check "the socket file of systemd is left in place" test -S "$sock"

finish
