#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1:54329 for the storage tests and print its URL.
# Installs Debian's postgresql package when missing. Needs root (or sudo).
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    as_root apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PGDATA=$(mktemp -d /tmp/nas-pg.XXXXXX)
as_root chown postgres "$PGDATA"
as_root su postgres -s /bin/sh -c "$PGBIN/initdb -D $PGDATA -A trust -U postgres" >/dev/null
as_root su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $PGDATA -l $PGDATA/server.log -w \
    -o '-p 54329 -k /tmp -c listen_addresses=127.0.0.1' start" >/dev/null
echo "postgresql://postgres@127.0.0.1:54329/postgres"
