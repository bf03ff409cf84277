# Sourced by the shell suites: the check counters and the last line that scripts/test reads.
#
#   check "what must hold" COMMAND...   counts a pass, or a failure with "FAIL: what"
#   pass / fail "what"                  the same, decided by the caller
#   checks_end NAME [LOG]               prints "NAME: N checks passed" and exits 0, or, after
#                                       printing LOG (a file) when there were failures,
#                                       "NAME: F of T checks failed" and exits 1
checks=0
failures=0
pass() { checks=$((checks + 1)); }
fail() { failures=$((failures + 1)); echo "FAIL: $*" >&2; }
check() { # DESCRIPTION COMMAND...
    what=$1; shift
    if "$@"; then pass; else fail "$what"; fi
}
checks_end() {
    if [ "$failures" -ne 0 ]; then
        if [ -n "${2:-}" ] && [ -f "$2" ]; then
            echo "---- $(basename "$2") ----" >&2
            cat "$2" >&2
        fi
        echo "$1: $failures of $((checks + failures)) checks failed"
        exit 1
    fi
    echo "$1: $checks checks passed"
    exit 0
}
