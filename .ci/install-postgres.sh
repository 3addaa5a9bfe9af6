#!/usr/bin/env bash
# Make sure PostgreSQL server binaries exist, so that the PostgreSQL tests run instead
# of being skipped. Installs Debian's package when initdb/pg_ctl/postgres are found
# neither in PATH nor in /usr/lib/postgresql/*/bin; does nothing otherwise.
# The tests start their own throwaway server (tests/pg_server.py); nothing is started
# here. Set EVERSTORE_PG_CONNINFO to use an existing server instead.
set -euo pipefail

have_binaries() {
    local dir
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1 \
        && command -v postgres >/dev/null 2>&1; then
        return 0
    fi
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
            return 0
        fi
    done
    return 1
}

if have_binaries; then
    echo "install-postgres: PostgreSQL server binaries found; nothing to do"
    exit 0
fi
if [ -n "${EVERSTORE_PG_CONNINFO:-}" ]; then
    echo "install-postgres: EVERSTORE_PG_CONNINFO is set; using that server"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-postgres: no apt-get here; install PostgreSQL yourself or set" \
        "EVERSTORE_PG_CONNINFO (the PostgreSQL tests will be skipped)" >&2
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-postgres: not root and no sudo; the PostgreSQL tests will be skipped" >&2
        exit 0
    fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-postgres: installing Debian's postgresql package"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
# Debian's package starts a cluster of its own on install where it can; the tests
# neither need nor use it.
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
have_binaries || { echo "install-postgres: postgresql installed but no binaries found" >&2; exit 1; }
