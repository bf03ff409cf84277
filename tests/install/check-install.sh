#!/bin/sh
# make install DESTDIR=... lays out every file where the documentation says, with the installed
# paths substituted into the systemd units; make uninstall removes all of it again, except a
# configuration that was changed after installation.
#
# Run by make check (top_builddir set by AM_TESTS_ENVIRONMENT), or by hand from the build
# directory:  top_builddir=$PWD sh tests/install/check-install.sh
set -u

top_builddir=${top_builddir:-.}
top_builddir=$(cd "$top_builddir" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/oversyncd-install.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM
stage=$tmp/stage

. "$(cd "${top_srcdir:-.}" && pwd)/tests/checks.sh"

# make, without the jobserver and the variables of the make check that runs this test.
submake() {
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES \
        "${MAKE:-make}" -s --no-print-directory -C "$top_builddir" "$@"
}

# The installation directories, expanded, as the Makefile has them.
cat >"$tmp/dirs.mk" <<'MK'
print-oversyncd-dirs:
	@echo "prefix='$(prefix)'"
	@echo "sbindir='$(sbindir)'"
	@echo "sysconfdir='$(sysconfdir)'"
	@echo "pkgdatadir='$(pkgdatadir)'"
	@echo "includedir='$(includedir)'"
	@echo "libdir='$(libdir)'"
	@echo "mandir='$(mandir)'"
	@echo "unitdir='$(systemdsystemunitdir)'"
MK
dirs=$(submake -f Makefile -f "$tmp/dirs.mk" print-oversyncd-dirs) || { echo "cannot read the installation directories" >&2; exit 99; }
eval "$dirs"
# configure --without-systemdsystemunitdir: no units
[ "$unitdir" = no ] && with_units=no || with_units=yes

install_tree() {
    submake install DESTDIR="$stage" >"$tmp/install.log" 2>&1 || {
        cat "$tmp/install.log" >&2
        echo "make install DESTDIR=$stage failed" >&2
        exit 1
    }
}
uninstall_tree() {
    submake uninstall DESTDIR="$stage" >"$tmp/uninstall.log" 2>&1 || {
        cat "$tmp/uninstall.log" >&2
        echo "make uninstall DESTDIR=$stage failed" >&2
        exit 1
    }
}

# ------------------------------------------------------------------------------- install
install_tree
d=$stage

check "sbin/oversyncd is an executable" test -f "$d$sbindir/oversyncd" -a -x "$d$sbindir/oversyncd"
out=$("$d$sbindir/oversyncd" --version 2>&1)
check "installed oversyncd --version prints its version (got: $out)" \
    sh -c 'case "$1" in "oversyncd "[0-9]*) exit 0 ;; *) exit 1 ;; esac' - "$out"

conf=$d$sysconfdir/oversyncd
check "oversyncd.conf.example installed" test -f "$conf/oversyncd.conf.example"
check "oversyncd.conf installed" test -f "$conf/oversyncd.conf"
check "oversyncd.conf is a copy of the example" cmp -s "$conf/oversyncd.conf" "$conf/oversyncd.conf.example"
check "the example is what the installed program prints" \
    sh -c '"$1" --print-example-config | cmp -s - "$2"' - "$d$sbindir/oversyncd" "$conf/oversyncd.conf.example"

for m in 0001_sidecar.sql 0002_oversyncd.sql 0003_fk_castable.sql; do
    check "migration $m installed" test -s "$d$pkgdatadir/sql/migrations/$m"
done
check "bundle layout 0001_layout.sql installed" test -s "$d$pkgdatadir/sql/bundle/0001_layout.sql"
check "example schema installed" test -s "$d$pkgdatadir/sql/examples/business.sql"
check "example plugin installed" test -s "$d$pkgdatadir/examples/plugin/example_materializer.c"
check "materializer.h installed" test -s "$d$includedir/oversyncd/materializer.h"
check "oversyncd.pc installed" test -s "$d$libdir/pkgconfig/oversyncd.pc"
check "oversyncd.pc names the installation prefix" grep -qx "prefix=$prefix" "$d$libdir/pkgconfig/oversyncd.pc"

man8=$d$mandir/man8/oversyncd.8
man5=$d$mandir/man5/oversyncd.conf.5
check "man8/oversyncd.8 installed" test -s "$man8"
check "man5/oversyncd.conf.5 installed" test -s "$man5"
version=${out#oversyncd }
for page in "$man8" "$man5"; do
    check "$(basename "$page") is the page of version $version" \
        grep -q "^\.TH .* \"oversyncd $version\"" "$page"
done
if command -v man >/dev/null 2>&1; then
    for page in "$man8" "$man5"; do
        warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
        check "man -l $(basename "$page") renders without warnings: $warnings" test -z "$warnings"
        check "man -l $(basename "$page") renders text" \
            sh -c 'MANWIDTH=80 man -l "$1" 2>/dev/null | grep -q oversyncd' - "$page"
    done
else
    echo "man not found: the pages are not rendered"
fi
# every key of the configuration is described in oversyncd.conf(5)
keys=$("$d$sbindir/oversyncd" --print-example-config | sed -n 's/^# \([a-z_]*\) =.*/\1/p')
keys="$keys materializer"
missing=
for k in $keys; do
    grep -q "^\\\\fB$k\\\\fR" "$man5" || missing="$missing $k"
done
check "oversyncd.conf.5 describes every key (missing:$missing)" test -z "$missing"

if [ "$with_units" = yes ]; then
    u=$d$unitdir
    for unit in oversyncd.service oversyncd-activated.service oversyncd.socket; do
        check "unit $unit installed in $unitdir" test -s "$u/$unit"
        check "unit $unit has no unsubstituted @variable@" sh -c '! grep -q "@[a-z_]*@" "$1"' - "$u/$unit"
    done
    for unit in oversyncd.service oversyncd-activated.service; do
        check "$unit starts the installed program" \
            grep -qx "ExecStart=$sbindir/oversyncd -c $sysconfdir/oversyncd/oversyncd.conf" "$u/$unit"
        check "$unit reloads with SIGHUP" grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$u/$unit"
        check "$unit stops with SIGTERM" grep -qx 'KillSignal=SIGTERM' "$u/$unit"
        check "$unit has NoNewPrivileges" grep -qx 'NoNewPrivileges=yes' "$u/$unit"
    done
    check "oversyncd.socket starts oversyncd-activated.service" \
        grep -qx 'Service=oversyncd-activated.service' "$u/oversyncd.socket"
    check "oversyncd-activated.service runs as user oversyncd" \
        grep -qx 'User=oversyncd' "$u/oversyncd-activated.service"
    if command -v systemd-analyze >/dev/null 2>&1; then
        # verify parses the units and checks that ExecStart= names an executable; the installed
        # program is under DESTDIR, so point the unit at it for the check.
        mkdir -p "$tmp/verify"
        for unit in oversyncd.service oversyncd-activated.service oversyncd.socket; do
            sed "s|^ExecStart=$sbindir/|ExecStart=$d$sbindir/|" "$u/$unit" >"$tmp/verify/$unit"
        done
        out=$(cd "$tmp/verify" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no \
              ./oversyncd.service ./oversyncd-activated.service ./oversyncd.socket 2>&1 |
              grep -v -e 'oversyncd.env' -e 'User=oversyncd' -e 'Unknown user' -e 'Failed to resolve user' \
                      -e 'Group=www-data' -e "group 'www-data'" -e 'Failed to resolve group')
        check "systemd-analyze verify accepts the units: $out" test -z "$out"
    fi
else
    echo "configured --without-systemdsystemunitdir: no units to check"
fi

# ----------------------------------------------------------------- reinstall, uninstall
# A changed configuration survives a reinstall and an uninstall.
echo "# changed by the administrator" >>"$conf/oversyncd.conf"
install_tree
check "make install keeps a changed oversyncd.conf" grep -q "changed by the administrator" "$conf/oversyncd.conf"
uninstall_tree
left=$(cd "$stage" && find . ! -type d | sort)
check "make uninstall keeps only the changed oversyncd.conf (left: $left)" \
    test "$left" = ".$sysconfdir/oversyncd/oversyncd.conf"

# An unchanged one goes with everything else.
rm -f "$conf/oversyncd.conf"
install_tree
uninstall_tree
left=$(cd "$stage" && find . ! -type d | sort)
check "make uninstall removes every file it installed (left: $left)" test -z "$left"

checks_end install
