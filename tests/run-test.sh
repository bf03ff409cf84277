#!/bin/sh
# Automake's LOG_COMPILER: unit tests run as they are; integration, end-to-end and documentation
# tests run inside a throwaway PostgreSQL cluster (tests/pg.sh).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
case "$1" in
*integration/*|*e2e/*|*docs/*) exec sh "$here/pg.sh" run "$@" ;;
*) exec "$@" ;;
esac
