#!/bin/sh
# The example of sql/examples/ works as shipped: business.sql creates the business tables of the
# go-oversync example server (checked column by column against that server's layout), and
# oversyncd-business.conf starts as its header says, also as root (the workers then run as
# www-data), serves FastCGI on its socket and materializes the reference client's payloads into
# those tables (Unix-second timestamps, base64 bytea, a base64 BLOB key as a foreign key).
#
# Only the socket directory /run/oversyncd is replaced by a temporary one; the database is the
# throwaway PostgreSQL of tests/pg.sh, which tests/run-test.sh starts for every test under e2e/.
# By hand, from the build directory:
#   top_builddir=$PWD top_srcdir=$PWD sh tests/pg.sh run sh tests/e2e/check-examples.sh
set -u

skip() { echo "SKIP: $*"; exit 77; }
cgi_fcgi=$(command -v cgi-fcgi) || skip "cgi-fcgi not found (package libfcgi-bin)"
command -v psql >/dev/null 2>&1 || skip "psql not found (package postgresql-client)"
[ -n "${DATABASE_URL:-}" ] || { echo "DATABASE_URL is not set: run this test through tests/pg.sh" >&2; exit 99; }

top_builddir=${top_builddir:-.}
top_srcdir=${top_srcdir:-$top_builddir}
oversyncd=$(cd "$top_builddir" && pwd)/oversyncd
[ -x "$oversyncd" ] || { echo "$oversyncd not built" >&2; exit 99; }
examples=$(cd "$top_srcdir" && pwd)/sql/examples
[ -f "$examples/oversyncd-business.conf" ] || { echo "$examples/oversyncd-business.conf missing" >&2; exit 99; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/oversyncd-examples.XXXXXX") || exit 99
chmod 755 "$tmp"
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
    checks_end "examples" "$tmp/oversyncd.log"
}
has() { # TEXT PATTERN: TEXT contains a line matching the grep pattern
    printf '%s\n' "$1" | grep -q -- "$2"
}
sql() { psql -X -A -t -q -v ON_ERROR_STOP=1 -c "$1" 2>&1; }

# ------------------------------------------------------------------ business.sql
out=$(psql -X -q -v ON_ERROR_STOP=1 -f "$examples/business.sql" 2>&1)
check "business.sql runs (got: $out)" test $? -eq 0
out=$(psql -X -q -v ON_ERROR_STOP=1 -f "$examples/business.sql" 2>&1)
check "business.sql runs a second time (got: $out)" test $? -eq 0

# The tables of go-oversync's examples/nethttp_server/server/handlers.go
# (InitializeApplicationTables): table.column type nullable default.
want='file_reviews.id uuid NO -
file_reviews.review text NO -
file_reviews.file_id uuid YES -
files.id uuid NO -
files.name text NO -
files.data bytea NO -
posts.id uuid NO -
posts.title text NO -
posts.content text NO -
posts.author_id uuid YES -
posts.created_at timestamp with time zone YES now()
posts.updated_at timestamp with time zone YES now()
users.id uuid NO -
users.name text NO -
users.email text NO -
users.created_at timestamp with time zone YES now()
users.updated_at timestamp with time zone YES now()'
have=$(sql "SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '
                   || CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END || ' '
                   || coalesce(pg_get_expr(d.adbin, d.adrelid), '-')
              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE n.nspname = 'business' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY c.relname, a.attnum")
check "business.sql has exactly the columns of the go-oversync example server (got:
$have)" test "$have" = "$want"

# Primary keys, foreign keys (deferrable, as the example server makes them) and the index.
want='file_reviews FOREIGN KEY (file_id) REFERENCES business.files(id) DEFERRABLE INITIALLY DEFERRED
file_reviews PRIMARY KEY (id)
files PRIMARY KEY (id)
posts FOREIGN KEY (author_id) REFERENCES business.users(id) DEFERRABLE INITIALLY DEFERRED
posts PRIMARY KEY (id)
users PRIMARY KEY (id)'
have=$(sql "SELECT c.conrelid::regclass::text || ' ' || pg_get_constraintdef(c.oid)
              FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
             WHERE n.nspname = 'business' AND c.contype IN ('p', 'f')
             ORDER BY 1" | sed 's/^business\.//')
check "business.sql has the keys of the go-oversync example server (got:
$have)" test "$have" = "$want"
have=$(sql "SELECT indexdef FROM pg_indexes WHERE schemaname = 'business' AND indexname = 'idx_posts_author_id'")
check "business.sql creates idx_posts_author_id (got: $have)" \
    test "$have" = "CREATE INDEX idx_posts_author_id ON business.posts USING btree (author_id)"

# ------------------------------------------------------- oversyncd-business.conf
run=$tmp/run
mkdir "$run"
conf=$tmp/oversyncd-business.conf
sed "s#/run/oversyncd#$run#g" "$examples/oversyncd-business.conf" >"$conf"
chmod 644 "$conf"
sock=$run/oversyncd.sock
check "the example names [server] listen, user and group" \
    sh -c 'grep -q "^listen = unix:/run/oversyncd/oversyncd.sock$" "$1" && grep -q "^user = " "$1" &&
           grep -q "^group = " "$1"' - "$examples/oversyncd-business.conf"

JWT_SECRET=examples-test-secret-0123456789abcdef0123456789
export JWT_SECRET DATABASE_URL

out=$("$oversyncd" -c "$conf" --check-config 2>&1)
check "--check-config accepts the example against business.sql (got: $out)" test $? -eq 0
check "--check-config counts its four tables (got: $out)" has "$out" 'configuration OK (4 registered table(s)'

# Started as the header says: no --listen, no other option. As root this is the case the
# example exists for: without [server] user oversyncd would refuse to start.
"$oversyncd" -c "$conf" >"$tmp/oversyncd.log" 2>&1 &
pid=$!
i=0
while [ ! -S "$sock" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
check "oversyncd started as $(id -un) listens on its socket" test -S "$sock"
[ -S "$sock" ] || finish

# One FastCGI request: METHOD PATH [AUTHORIZATION [BODY]]; prints the answer.
fcgi() {
    if [ -n "${4:-}" ]; then
        printf '%s' "$4" | env -i REQUEST_METHOD="$1" SCRIPT_NAME="$2" REQUEST_URI="$2" \
            SERVER_PROTOCOL=HTTP/1.1 SERVER_NAME=localhost CONTENT_TYPE=application/json \
            CONTENT_LENGTH="$(printf '%s' "$4" | wc -c)" HTTP_AUTHORIZATION="$3" \
            timeout 30 "$cgi_fcgi" -bind -connect "$sock" 2>&1 | tr -d '\r'
    else
        env -i REQUEST_METHOD="$1" SCRIPT_NAME="$2" REQUEST_URI="$2" SERVER_PROTOCOL=HTTP/1.1 \
            SERVER_NAME=localhost ${3:+HTTP_AUTHORIZATION="$3"} \
            timeout 30 "$cgi_fcgi" -bind -connect "$sock" </dev/null 2>&1 | tr -d '\r'
    fi
}

if [ "$(id -u)" = 0 ]; then
    owner=$(stat -c '%U:%G %a' "$sock")
    check "as root the socket belongs to www-data:www-data, mode 660 (got: $owner)" \
        test "$owner" = "www-data:www-data 660"
    check "as root the master stays root" test "$(ps -o user= -p "$pid" | tr -d ' ')" = root
    i=0
    while [ -z "$(ps -o user= --ppid "$pid")" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    workers=$(ps -o user= --ppid "$pid" | sort -u | tr '\n' ' ')
    check "as root the workers run as www-data (got: $workers)" test "$workers" = "www-data "
else
    echo "note: not root; the root-specific checks (user, group, socket owner) are skipped"
fi

out=$(fcgi GET /health)
check "GET /health answers 200 (got: $out)" has "$out" '^Status: 200'

token=$("$oversyncd" token -c "$conf" --user alice --device phone) || token=
check "oversyncd token -c the example prints a token" test -n "$token"

# What the reference client (oversqlite, examples/mobile_flow) uploads for these tables.
user=6d3b2f0e-2a6e-4c8e-9d2b-1f2e3d4c5b6a
post=7e4c3a1f-3b7f-4d9f-8e3c-2a3f4e5d6c7b
file=8f5d4b2a-4c8a-4e0a-9f4d-3b4a5f6e7d8c
review=9a6e5c3b-5d9b-4f1b-8a5e-4c5b6a7f8e9d
file_b64=$(sql "SELECT encode(decode(replace('$file', '-', ''), 'hex'), 'base64')")
check "the file key in base64 (got: $file_b64)" test "$file_b64" = "j11LKkyKTgqfTTtKX259jA=="
body='{"last_server_seq_seen":0,"changes":[
 {"source_change_id":1,"schema":"business","table":"posts","op":"INSERT","pk":"'$post'","server_version":0,
  "payload":{"id":"'$post'","title":"Hello","content":"first post","author_id":"'$user'","created_at":1754636460,"updated_at":1754636460}},
 {"source_change_id":2,"schema":"business","table":"users","op":"INSERT","pk":"'$user'","server_version":0,
  "payload":{"id":"'$user'","name":"Ada","email":"ada@example.com","created_at":1754636460,"updated_at":1754636460}},
 {"source_change_id":3,"schema":"business","table":"file_reviews","op":"INSERT","pk":"'$review'","server_version":0,
  "payload":{"id":"'$review'","review":"fine","file_id":"'$file_b64'"}},
 {"source_change_id":4,"schema":"business","table":"files","op":"INSERT","pk":"'$file'","server_version":0,
  "payload":{"id":"'$file_b64'","name":"hello.txt","data":"aGVsbG8="}}]}'
out=$(fcgi POST /sync/upload "Bearer $token" "$body")
check "the upload answers 200 (got: $out)" has "$out" '^Status: 200'
for scid in 1 2 3 4; do
    check "change $scid is applied at version 1 (got: $out)" \
        has "$out" "{\"source_change_id\":$scid,\"status\":\"applied\",\"new_server_version\":1}"
done

have=$(sql "SELECT u.name || ' ' || u.email || ' ' || to_char(u.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                   || ' | ' || p.title || ' ' || p.content || ' ' || p.author_id
                   || ' | ' || f.name || ' ' || encode(f.data, 'escape')
                   || ' | ' || r.review || ' ' || r.file_id
              FROM business.users u, business.posts p, business.files f, business.file_reviews r
             WHERE u.id = '$user' AND p.id = '$post' AND f.id = '$file' AND r.id = '$review'")
check "the generic materializer wrote the four rows into the business tables (got: $have)" \
    test "$have" = "Ada ada@example.com 2025-08-08 07:01:00 | Hello first post $user | hello.txt hello | fine $file"

# SIGTERM: a clean stop that removes the socket.
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
check "the socket is removed on stop" test ! -e "$sock"

finish
