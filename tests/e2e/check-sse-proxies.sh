#!/bin/sh
# GET /sync/watch (Server-Sent Events) streams unbuffered through the shipped nginx and Apache
# configurations (examples/nginx/oversyncd.conf: nginx honours oversyncd's X-Accel-Buffering: no;
# examples/apache/oversyncd-proxy-fcgi.conf: flushpackets=on), as lighttpd's is tested by
# tests/e2e/check_e2e_watch. A bundle deployment with [bundle] watch = on and a heartbeat every
# 300 ms, behind each web server in turn: a client must read several heartbeats, spaced like the
# server writes them, within 2 s; a buffering proxy would deliver nothing before its buffer
# fills or the stream ends.
#
# Runs inside tests/pg.sh (tests/run-test.sh does that for every test under e2e/). Skips (77) a
# web server that is not installed; skips everything when not root (the web servers' users need
# the socket). By hand, from the build directory:
#   top_builddir=$PWD top_srcdir=$PWD sh tests/pg.sh run sh tests/e2e/check-sse-proxies.sh
set -u

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (nginx and Apache run their workers as other users)"
command -v curl >/dev/null 2>&1 || skip "curl not found"
[ -n "${DATABASE_URL:-}" ] || { echo "DATABASE_URL is not set: run this test through tests/pg.sh" >&2; exit 99; }
top_builddir=${top_builddir:-.}
top_srcdir=${top_srcdir:-$top_builddir}
oversyncd=$(cd "$top_builddir" && pwd)/oversyncd
src=$(cd "$top_srcdir" && pwd)
[ -x "$oversyncd" ] || { echo "$oversyncd not built" >&2; exit 99; }
nginx=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null)
apache=$(command -v apache2 || ls /usr/sbin/apache2 2>/dev/null)
[ -n "$nginx" ] || [ -n "$apache" ] || skip "neither nginx nor apache2 is installed"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/oversyncd-sse.XXXXXX") || exit 99
chmod 755 "$tmp"
os_pid= db=sse_$$
cleanup() {
    [ -f "$tmp/nginx/nginx.pid" ] && kill -TERM "$(cat "$tmp/nginx/nginx.pid")" 2>/dev/null
    [ -f "$tmp/apache/httpd.pid" ] && kill -TERM "$(cat "$tmp/apache/httpd.pid")" 2>/dev/null
    if [ -n "$os_pid" ] && kill -0 "$os_pid" 2>/dev/null; then
        kill -TERM "$os_pid" 2>/dev/null
        sleep 1
        kill -KILL "$os_pid" 2>/dev/null
        pkill -KILL -P "$os_pid" 2>/dev/null
    fi
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
    sleep 0.3
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

. "$src/tests/checks.sh"
finish() {
    checks_end "sse proxies" "$tmp/oversyncd.log"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ------------------------------------------------------------------------ oversyncd
psql -X -q -d postgres -c "CREATE DATABASE $db" >/dev/null || exit 99
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$src/sql/examples/bundle-business.sql" >/dev/null || exit 99
secret=sse-test-secret-0123456789abcdef0123456789abcdef0123456789abcdef0123
sock=$tmp/oversyncd.sock
cat >"$tmp/oversyncd.conf" <<CONF
[server]
listen = unix:$sock
socket_mode = 0666
workers = 2
user = www-data
group = www-data
[database]
url = "$DATABASE_URL dbname=$db"
[auth]
jwt_secret = $secret
[sync]
protocol = bundle
[bundle]
watch = on
watch_heartbeat = 300ms
[table business.users]
sync_key = id
CONF
env -u DATABASE_URL "$oversyncd" -c "$tmp/oversyncd.conf" >"$tmp/oversyncd.log" 2>&1 &
os_pid=$!
i=0
while [ ! -S "$sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
check "oversyncd serves the bundle protocol with watch on" test -S "$sock"
token=$(env -u DATABASE_URL "$oversyncd" token -c "$tmp/oversyncd.conf" --user sse-user --device d 2>/dev/null)

# A stream of ~2 s through port $1: the heartbeats read and when (ms since the request).
stream() {
    curl -sN --max-time 2 -H "Authorization: Bearer $token" -H 'Oversync-Source-ID: sse-dev' \
        "http://127.0.0.1:$1/sync/watch" 2>/dev/null |
        while IFS= read -r line; do
            [ "$line" = ": heartbeat" ] && date +%s%3N
        done
}

# expect_streaming NAME PORT: at least 4 heartbeats, the first within 1 s, spread over >= 600 ms
expect_streaming() {
    name=$1 port=$2
    curl -s -o /dev/null -X POST -H "Authorization: Bearer $token" -H 'Oversync-Source-ID: sse-dev' \
        -H 'Content-Type: application/json' -d '{"has_local_pending_rows":false}' "http://127.0.0.1:$port/sync/connect"
    start=$(date +%s%3N)
    times=$(stream "$port")
    n=$(printf '%s\n' "$times" | grep -c .)
    first=$(printf '%s\n' "$times" | head -n 1)
    last=$(printf '%s\n' "$times" | tail -n 1)
    if [ "$n" -ge 4 ] && [ $((first - start)) -lt 1000 ] && [ $((last - first)) -ge 600 ]; then
        pass
    else
        fail "$name: the stream was not delivered as written (heartbeats: $n, first after $((${first:-0} - start)) ms, spread $((${last:-0} - ${first:-0})) ms)"
    fi
}

# -------------------------------------------------------------------------------- nginx
if [ -n "$nginx" ] && [ -f /etc/nginx/fastcgi_params ]; then
    port=$(free_port)
    d=$tmp/nginx
    mkdir -p "$d/logs"
    cp /etc/nginx/fastcgi_params "$d/"
    sed -e "s#unix:/run/oversyncd/oversyncd.sock#unix:$sock#" -e "s#listen 80;#listen 127.0.0.1:$port;#" \
        -e "s#/var/log/nginx#$d/logs#g" "$src/examples/nginx/oversyncd.conf" >"$d/site.conf"
    cat >"$d/nginx.conf" <<NGINX
user www-data;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/logs/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $d/body; fastcgi_temp_path $d/fastcgi; proxy_temp_path $d/proxy;
    scgi_temp_path $d/scgi; uwsgi_temp_path $d/uwsgi;
    include $d/site.conf;
}
NGINX
    if "$nginx" -p "$d" -c "$d/nginx.conf" >"$d/out" 2>&1; then
        i=0
        while ! curl -s -o /dev/null "http://127.0.0.1:$port/health" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        expect_streaming nginx "$port"
    else
        fail "nginx did not start: $(cat "$d/out")"
    fi
fi

# ------------------------------------------------------------------- Apache mod_proxy_fcgi
mods=/usr/lib/apache2/modules
if [ -n "$apache" ] && [ -f "$mods/mod_proxy_fcgi.so" ]; then
    port=$(free_port)
    d=$tmp/apache
    mkdir -p "$d/logs"
    chown www-data "$d/logs"
    sed -e "s#unix:/run/oversyncd/oversyncd.sock#unix:$sock#" -e "s#<VirtualHost \*:80>#<VirtualHost *:$port>#" \
        -e "s#/var/log/apache2#$d/logs#g" "$src/examples/apache/oversyncd-proxy-fcgi.conf" >"$d/site.conf"
    cat >"$d/httpd.conf" <<APACHE
ServerRoot $d
PidFile $d/httpd.pid
Listen 127.0.0.1:$port
ServerName localhost
LoadModule mpm_event_module $mods/mod_mpm_event.so
LoadModule authz_core_module $mods/mod_authz_core.so
LoadModule authz_host_module $mods/mod_authz_host.so
LoadModule proxy_module $mods/mod_proxy.so
LoadModule proxy_fcgi_module $mods/mod_proxy_fcgi.so
User www-data
Group www-data
ErrorLog $d/logs/error.log
Include $d/site.conf
APACHE
    if "$apache" -f "$d/httpd.conf" -k start >"$d/out" 2>&1; then
        i=0
        while ! curl -s -o /dev/null "http://127.0.0.1:$port/health" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        expect_streaming "Apache mod_proxy_fcgi" "$port"
    else
        fail "Apache did not start: $(cat "$d/out")"
    fi
fi
finish
