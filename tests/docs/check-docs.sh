#!/bin/sh
# The documentation against the code, to catch the next drift between them:
#
#   1. routes: the application's route table (src/app.c), the endpoint table and the
#      section headings of docs/api.md, and the paths of docs/openapi.yaml name the same
#      METHOD /path pairs;
#   2. configuration keys: every `[section] key` the documents mention is a key of that section
#      (as oversyncd --print-example-config lists them), and so is every `key = value` they show
#      in inline code, unless it is one of the few non-configuration words listed below;
#   3. metrics: every oversyncd_*_total/_seconds/_rows name in the documents is a metric of
#      src/metrics.c, and docs/operations.md describes every metric src/metrics.c has;
#   4. configuration examples: every ```ini block of the documents and every example
#      configuration file passes oversyncd --check-config against a database that has the example
#      business tables (sql/examples/business.sql); only the absence of other tables, functions
#      or plugins named by an example is tolerated;
#   5. the README's walk-through: its shell blocks run as written (paths and the port replaced)
#      against oversyncd and lighttpd started from lighttpd-example/, and each answer matches the
#      JSON block the README shows after the command (every member shown, with its value; "ts"
#      and the "..." placeholder excepted; the statuses in order).
#
# Runs inside tests/pg.sh (DATABASE_URL names its PostgreSQL); tests/run-test.sh does that for
# every test under docs/. By hand, from the build directory:
#   top_builddir=$PWD top_srcdir=$PWD sh tests/pg.sh run sh tests/docs/check-docs.sh
set -u

[ -n "${DATABASE_URL:-}" ] || { echo "DATABASE_URL is not set: run this test through tests/pg.sh" >&2; exit 99; }
top_builddir=${top_builddir:-.}
top_srcdir=${top_srcdir:-$top_builddir}
oversyncd=$(cd "$top_builddir" && pwd)/oversyncd
src=$(cd "$top_srcdir" && pwd)
[ -x "$oversyncd" ] || { echo "$oversyncd not built" >&2; exit 99; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/oversyncd-docs.XXXXXX") || exit 99
chmod 755 "$tmp"
os_pid=
lt_pid=
cleanup() {
    for p in $lt_pid $os_pid; do
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null
            sleep 1
            kill -KILL "$p" 2>/dev/null
        fi
    done
    [ -n "$os_pid" ] && pkill -KILL -P "$os_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

. "$(cd "${top_srcdir:-.}" && pwd)/tests/checks.sh"
finish() {
    checks_end "docs"
}

cd "$src" || exit 99
# The documents users read.
docs="README.md docs/api.md docs/architecture.md docs/bundle-protocol.md docs/configuration.md docs/deployment.md
docs/install.md docs/materializers.md docs/migrating.md docs/operations.md docs/performance.md
lighttpd-example/README.md"
for f in examples/*/README.md; do docs="$docs $f"; done
for f in $docs; do
    [ -f "$f" ] || { fail "$f is listed but missing"; }
done

# ------------------------------------------------------------------------ 1. routes
# { "POST", "/sync/upload", ROUTE_UPLOAD, true, true, handle_upload },
# The routes of the upload protocol (ROUTE_UPLOAD) and of every deployment (ROUTE_ANY) are
# documented in docs/api.md, those of the bundle protocol (ROUTE_BUNDLE, ROUTE_TEST) in
# docs/bundle-protocol.md, all of them in docs/openapi.yaml.
sed -n 's/^ *{ *"\([A-Z]*\)", *"\(\/[^"]*\)", *\(ROUTE_[A-Z]*\),.*/\1 \2 \3/p' src/app.c >"$tmp/routes.all"
grep -E ' ROUTE_(UPLOAD|ANY)$' "$tmp/routes.all" | cut -d' ' -f1,2 | sort >"$tmp/routes.code"
grep -E ' ROUTE_(BUNDLE|TEST)$' "$tmp/routes.all" | cut -d' ' -f1,2 | sort >"$tmp/routes.bundle-code"
cut -d' ' -f1,2 "$tmp/routes.all" | sort >"$tmp/routes.all-code"
check "the application declares routes (src/app.c)" test -s "$tmp/routes.code"
check "the application declares bundle routes (src/app.c)" test -s "$tmp/routes.bundle-code"
# | [`POST /sync/upload`](#post-syncupload) | ...
sed -n 's/^| *\[`\([A-Z]* \/[^`]*\)`\].*/\1/p' docs/api.md | sort >"$tmp/routes.api-table"
sed -n 's/^## \([A-Z][A-Z]* \/.*\)$/\1/p' docs/api.md | sort >"$tmp/routes.api-headings"
sed -n 's/^| *\[`\([A-Z]* \/[^`]*\)`\].*/\1/p' docs/bundle-protocol.md | sort >"$tmp/routes.bundle-table"
sed -n 's/^### \([A-Z][A-Z]* \/.*\)$/\1/p' docs/bundle-protocol.md | sort >"$tmp/routes.bundle-headings"
awk '
    /^paths:/ { inpaths = 1; next }
    inpaths && /^[^ ]/ { inpaths = 0 }
    inpaths && /^  \/[^ ]*:$/ { path = $1; sub(/:$/, "", path); next }
    inpaths && path != "" && /^    (get|put|post|delete|patch|head|options):/ {
        m = $1; sub(/:$/, "", m); print toupper(m) " " path
    }' docs/openapi.yaml | sort >"$tmp/routes.openapi"
for which in api-table api-headings bundle-table bundle-headings openapi; do
    case $which in
    api-*) code=routes.code ;;
    bundle-*) code=routes.bundle-code ;;
    *) code=routes.all-code ;;
    esac
    if cmp -s "$tmp/$code" "$tmp/routes.$which"; then
        pass
    else
        fail "the routes of $which differ from the router's (< router, > docs):
$(diff "$tmp/$code" "$tmp/routes.$which" | grep '^[<>]')"
    fi
done

# ------------------------------------------------------------------ 2. configuration keys
# "section key" for every key, from the program's own list.
"$oversyncd" --print-example-config | awk '
    /^\[table / { sec = "table"; next }
    /^\[[a-z]+\]/ { sec = substr($1, 2, length($1) - 2); next }
    /^#? ?[a-z_]+ =/ { k = $0; sub(/^# ?/, "", k); sub(/ =.*/, "", k); print sec " " k }
    /^# \[table SCHEMA\.NAME\] sections/ { sec = "table"; next }
    sec == "table" && /^# [a-z_]+:$/ { k = $2; sub(/:$/, "", k); print sec " " k }' | sort -u >"$tmp/keys"
check "oversyncd --print-example-config lists the keys" grep -q '^sync max_body_bytes$' "$tmp/keys"
# Inline code spans of the documents, one per line.
for f in $docs; do
    grep -o '`[^`]*`' "$f" | tr -d '`' | sed "s|^|$f: |"
done >"$tmp/spans"
# `[sync] max_body_bytes`, `[auth] jwt_require_exp = false`
grep -oE '^[^:]+: .*\[(server|database|auth|sync|bundle)\] [a-z_]+' "$tmp/spans" |
    sed -E 's/^([^:]+): .*\[([a-z]+)\] ([a-z_]+)$/\1 \2 \3/' | sort -u >"$tmp/mentions"
check "the documents mention section-qualified keys" test -s "$tmp/mentions"
while read -r f sec key; do
    if grep -qx "$sec $key" "$tmp/keys"; then pass; else fail "$f mentions [$sec] $key, which is no key of [$sec]"; fi
done <"$tmp/mentions"
# `log_format = json`: the key must exist in some section. Words in inline code that look like
# a setting but are not oversyncd keys (download parameters, PostgreSQL settings and columns):
not_keys=" after until key plan_cache_mode user_id "
sed -nE 's/^([^:]+): ([a-z][a-z_]*) = .*/\1 \2/p' "$tmp/spans" | sort -u >"$tmp/assignments"
while read -r f key; do
    case $not_keys in *" $key "*) continue ;; esac
    if grep -q " $key\$" "$tmp/keys"; then pass; else fail "$f shows \`$key = ...\`, but $key is no configuration key"; fi
done <"$tmp/assignments"

# --------------------------------------------------------------------------- 3. metrics
grep -oE '"oversyncd_[a-z_]+' src/metrics.c | tr -d '"' | sort -u >"$tmp/metrics.code"
check "src/metrics.c names metrics" test -s "$tmp/metrics.code"
for f in $docs; do
    grep -oE 'oversyncd_[a-z_]+_(total|seconds|rows)' "$f" | sort -u | sed "s|^|$f |"
done >"$tmp/metrics.docs"
while read -r f m; do
    if grep -qx "$m" "$tmp/metrics.code"; then pass; else fail "$f names the metric $m, which src/metrics.c does not have"; fi
done <"$tmp/metrics.docs"
while read -r m; do
    if grep -q "^| \`$m\` |" docs/operations.md; then pass; else fail "docs/operations.md does not describe the metric $m"; fi
done <"$tmp/metrics.code"

# ------------------------------------------------------------- 4. configuration examples
JWT_SECRET=docs-test-secret-0123456789abcdef0123456789abcdef0123456789abcdef01
export JWT_SECRET DATABASE_URL
out=$(psql -X -q -v ON_ERROR_STOP=1 -c 'SET client_min_messages = warning' -f sql/examples/business.sql 2>&1)
check "sql/examples/business.sql runs (got: $out)" test $? -eq 0

# Every ```ini block (fences may be indented, as in a list), one file each.
n=0
for f in $docs; do
    awk -v out="$tmp/ini" -v src="$f" '
        function safe(s) { gsub(/[^A-Za-z0-9]/, "_", s); return s }
        !inblock && /^ *```ini *$/ { inblock = 1; n++; indent = index($0, "`") - 1;
                                     name = out "." safe(src) "." n;
                                     print "# " src ", ini block " n > name; next }
        inblock && /^ *``` *$/ { inblock = 0; close(name); next }
        inblock { line = $0
                  if (indent > 0 && substr(line, 1, indent) ~ /^ *$/) line = substr(line, indent + 1)
                  print line > name }' "$f"
done
for f in lighttpd-example/oversyncd.conf lighttpd-example/oversyncd-bundle.conf sql/examples/oversyncd-business.conf etc/oversyncd.conf.example \
    examples/*/*.conf; do
    grep -qE '^\[(server|database|auth|sync|bundle|table [^]]*)\]' "$f" || continue   # an oversyncd configuration
    n=$((n + 1))
    { echo "# $f"; cat "$f"; } >"$tmp/ini.file.$n"
done
nini=0
for conf in "$tmp"/ini.*; do
    [ -f "$conf" ] || continue
    nini=$((nini + 1))
    what=$(head -n 1 "$conf" | sed 's/^# //')
    out=$("$oversyncd" --check-config -c "$conf" 2>&1)
    rc=$?
    # What an example may leave to its reader: tables, functions and plugins of its own.
    bad=$(printf '%s\n' "$out" | grep -vE '^(configuration OK|foreign keys |[a-z_.]+ [a-z_]+: would be made|business\.)' |
          grep -vE ': no such table in the database$|materializer: no such function |\] materializer: (cannot load |table .* does not exist$|no function )')
    if [ $rc -eq 0 ] || { [ -z "$bad" ] && printf '%s\n' "$out" | grep -q .; }; then
        pass
    else
        fail "oversyncd --check-config refuses $what (status $rc):
$(sed 's/^/    /' "$conf")
  says:
$(printf '%s\n' "$out" | sed 's/^/    /')"
    fi
done
check "found the configuration examples (ini blocks and files; got $nini)" test "$nini" -ge 10

# ------------------------------------------------------------------ 5. README walk-through
# The blocks of the section "A walk-through with curl": every ```sh block, and the ```json block
# that follows it directly (its expected answer).
awk -v out="$tmp/walk" '
    /^## / { insec = ($0 ~ /^## A walk-through with curl/); next }
    !insec { next }
    state == "" && /^```sh$/ { n++; state = "sh"; file = out "." n ".sh"; printf "" > file; next }
    state == "sh" && /^```$/ { state = "after"; close(file); next }
    state == "after" && /^```json$/ { state = "json"; file = out "." n ".json"; printf "" > file; next }
    state == "after" { state = "" }
    state == "json" && /^```$/ { state = ""; close(file); next }
    state == "sh" || state == "json" { print > file }' README.md
nwalk=$(ls "$tmp"/walk.*.sh 2>/dev/null | wc -l)
check "README.md has a walk-through with curl (got $nwalk shell blocks)" test "$nwalk" -ge 4

# oversyncd and lighttpd from lighttpd-example/, paths and the port replaced, as the quickstart
# runs them (.quickstart/ in the README is this directory).
qs=$tmp/qs
mkdir -p "$qs/run" "$qs/log" "$qs/www"
chmod 755 "$qs" "$qs/run" "$qs/www"
[ "$(id -u)" = 0 ] && chown www-data "$qs/log" 2>/dev/null
printf '%s\n' "$JWT_SECRET" >"$qs/jwt_secret"
sed "s#/run/oversyncd#$qs/run#g" lighttpd-example/oversyncd.conf >"$qs/oversyncd.conf"
chmod 644 "$qs/oversyncd.conf"
"$oversyncd" -c "$qs/oversyncd.conf" >"$tmp/oversyncd.log" 2>&1 &
os_pid=$!
i=0
while [ ! -S "$qs/run/oversyncd.sock" ] && kill -0 "$os_pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
check "oversyncd starts from lighttpd-example/oversyncd.conf" test -S "$qs/run/oversyncd.sock"
lighttpd=$(command -v lighttpd || echo /usr/sbin/lighttpd)
port=
if [ ! -x "$lighttpd" ] || ! command -v curl >/dev/null 2>&1; then
    echo "note: lighttpd or curl not found; the README walk-through is not checked"
elif [ -S "$qs/run/oversyncd.sock" ]; then
    base=$((20000 + $$ % 20000))
    for try in 0 1 2 3 4 5; do
        p=$((base + try * 97))
        sed -e "s#/run/oversyncd#$qs/run#g" -e "s#/var/log/lighttpd#$qs/log#g" -e "s#/var/www/html#$qs/www#g" \
            -e "s#^server.port = 8080\$#server.port = $p#" lighttpd-example/lighttpd.conf >"$qs/lighttpd.conf"
        rm -f "$qs/log/oversyncd-error.log"
        "$lighttpd" -D -f "$qs/lighttpd.conf" >"$tmp/lighttpd.out" 2>&1 &
        lt_pid=$!
        # "server started" is logged once the port is bound: until then another server could
        # answer on it.
        i=0
        while [ $i -lt 100 ] && kill -0 "$lt_pid" 2>/dev/null &&
            ! grep -q 'server started' "$qs/log/oversyncd-error.log" 2>/dev/null; do
            sleep 0.1; i=$((i + 1))
        done
        if kill -0 "$lt_pid" 2>/dev/null && grep -q 'server started' "$qs/log/oversyncd-error.log" 2>/dev/null; then
            port=$p
            break
        fi
        kill -TERM "$lt_pid" 2>/dev/null
        wait "$lt_pid" 2>/dev/null
        lt_pid=
    done
fi
[ -x "$lighttpd" ] && command -v curl >/dev/null 2>&1 &&
    check "lighttpd starts from lighttpd-example/lighttpd.conf" test -n "$port"

if [ -n "$port" ]; then
    # One shell runs every block in turn, so that the README's exports carry over.
    {
        echo "cd '$tmp'"
        i=1
        while [ -f "$tmp/walk.$i.sh" ]; do
            echo "{"
            sed -e "s#http://127.0.0.1:8080#http://127.0.0.1:$port#g" -e "s#\.quickstart/#$qs/#g" \
                -e "s#\./oversyncd #$oversyncd #g" "$tmp/walk.$i.sh"
            echo "} >'$tmp/walk.$i.out' 2>&1"
            i=$((i + 1))
        done
    } >"$tmp/walk.run"
    sh "$tmp/walk.run"
    [ -n "${DOCS_VERBOSE:-}" ] && for o in "$tmp"/walk.*.out; do echo "== $o"; cat "$o"; done
    # Compact JSON: white space outside strings is all the README adds.
    compact() { tr -d '\n' <"$1" | sed 's/\([]{}[,:]\) */\1/g; s/ *\([]},:]\)/\1/g'; }
    i=1
    while [ -f "$tmp/walk.$i.sh" ]; do
        if [ -f "$tmp/walk.$i.json" ]; then
            want=$(compact "$tmp/walk.$i.json")
            got=$(compact "$tmp/walk.$i.out")
            cmd=$(grep -m1 'curl' "$tmp/walk.$i.sh")
            # every "member":scalar shown, except the time stamp and the placeholder
            printf '%s\n' "$want" | grep -oE '"[A-Za-z_]+":("[^"]*"|-?[0-9][0-9.]*|true|false|null)' |
                grep -v '^"ts":' | sort -u >"$tmp/want.pairs"
            missing=$(while read -r pair; do
                          printf '%s' "$got" | grep -qF -- "$pair" || printf '%s ' "$pair"
                      done <"$tmp/want.pairs")
            check "README walk-through: \`$cmd\` answers as shown (missing: $missing)
  shown: $want
  got:   $got" test -z "$missing"
            # members with an object or array value
            missing=$(printf '%s\n' "$want" | grep -oE '"[A-Za-z_]+":[[{]' | sort -u | while read -r m; do
                          printf '%s' "$got" | grep -qF -- "$m" || printf '%s ' "$m"
                      done)
            check "README walk-through: \`$cmd\` has every member shown (missing: $missing)" test -z "$missing"
            w=$(printf '%s' "$want" | grep -oE '"status":"[a-z_]+"' | tr '\n' ' ')
            g=$(printf '%s' "$got" | grep -oE '"status":"[a-z_]+"' | tr '\n' ' ')
            check "README walk-through: \`$cmd\` statuses (shown: $w; got: $g)" test "$w" = "$g"
        fi
        i=$((i + 1))
    done
fi

finish
