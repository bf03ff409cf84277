#!/bin/sh
# The include graph of src/ against the layers of docs/architecture.md: a file includes only
# files of its own module or of a lower layer, and the modules form no circle.
#
#   layer 0  leaves: xalloc arena strbuf log uuid base64 identity swar json_scan canonical_json
#            bundle_hash config (config.c, config_doc.c)
#   layer 1  db/
#   layer 2  materialize/
#   layer 3  sync/   auth/   http/   bundle/   (side by side: none includes another)
#   layer 4  metrics
#   layer 5  the top: app app_bundle app_test app_watch watch watch_client worker listener master main
#
# Leaves may include each other (strbuf uses the arena, config the log), and so may the files of
# the top (main starts the master, which forks workers); tsort proves that the module graph has
# no circle, and no two source files share a name (the static library would keep only one).
# Ends with "layers: N checks passed".
set -u
top_srcdir=${top_srcdir:-.}
src=$(cd "$top_srcdir/src" && pwd) || exit 99
tmp=$(mktemp -d "${TMPDIR:-/tmp}/oversyncd-layers.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT

. "$(cd "$top_srcdir" && pwd)/tests/checks.sh"

# module and layer of a path relative to src/
module_of() {
    case $1 in
    db/*) echo db ;;
    materialize/*) echo materialize ;;
    sync/*) echo sync ;;
    auth/*) echo auth ;;
    http/*) echo http ;;
    bundle/*) echo bundle ;;
    config.[ch] | config_doc.c | config_internal.h) echo config ;;
    *) basename "$1" | sed 's/\.[ch]$//' ;;
    esac
}
layer_of() {
    case $1 in
    db) echo 1 ;;
    materialize) echo 2 ;;
    sync | auth | http | bundle) echo 3 ;;
    metrics) echo 4 ;;
    app | app_bundle | app_test | app_watch | watch | watch_client | worker | listener | master | main) echo 5 ;;
    xalloc | arena | strbuf | log | uuid | base64 | identity | swar | json_scan | canonical_json | bundle_hash | config)
        echo 0 ;;
    *) echo unknown ;;
    esac
}

: >"$tmp/edges"
files=$(cd "$src" && find . -name '*.[ch]' ! -name sql_embedded.c | sed 's|^\./||' | sort)
for f in $files; do
    mod=$(module_of "$f")
    layer=$(layer_of "$mod")
    if [ "$layer" = unknown ]; then
        fail "src/$f belongs to no layer: add its module to tests/unit/check-layers.sh and docs/architecture.md"
        continue
    fi
    pass
    dir=$(dirname "$f")
    for inc in $(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$src/$f"); do
        # as the compiler resolves it: beside the file first, then from src/ (-I src)
        if [ -f "$src/$dir/$inc" ]; then
            target=$(cd "$src/$dir" && realpath --relative-to="$src" "$inc")
        elif [ -f "$src/$inc" ]; then
            target=$inc
        else
            continue   # a generated or system-side header (config.h of the build is -include'd)
        fi
        tmod=$(module_of "$target")
        tlayer=$(layer_of "$tmod")
        if [ "$tmod" = "$mod" ]; then
            pass
            continue
        fi
        echo "$mod $tmod" >>"$tmp/edges"
        if [ "$tlayer" = unknown ]; then
            fail "src/$f includes $target, which belongs to no layer"
        elif [ "$tlayer" = "$layer" ] && { [ "$layer" -eq 0 ] || [ "$layer" -eq 5 ]; }; then
            pass   # leaf on leaf, or within the top: allowed, circles are caught below
        elif [ "$tlayer" -ge "$layer" ]; then
            fail "src/$f (layer $layer, $mod) includes $target (layer $tlayer, $tmod): an arrow up or sideways"
        else
            pass
        fi
    done
done

# liboversyncd.a is made with "ar cru", which keeps one member per file name: of two sources
# with the same name in different modules (sync/schema.c, bundle/schema.c) one object would be
# silently dropped from the library, depending on their time stamps.
dups=$(for f in $files; do case $f in *.c) basename "$f" ;; esac; done | sort | uniq -d | tr '\n' ' ')
if [ -n "$dups" ]; then
    fail "sources with the same file name in two modules (liboversyncd.a would keep only one object of each): $dups"
else
    pass
fi

if ! sort -u "$tmp/edges" | tsort >/dev/null 2>"$tmp/tsort" || [ -s "$tmp/tsort" ]; then
    fail "the modules include each other in a circle: $(tr '\n' ' ' <"$tmp/tsort")"
else
    pass
fi

checks_end layers
