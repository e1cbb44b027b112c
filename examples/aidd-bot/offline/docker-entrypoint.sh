#!/bin/sh
# Minimal equivalent of the official postgres image's entrypoint for the Debian base.
set -eu

if [ "${1:-}" != "postgres" ]; then
    exec "$@"  # e.g. "psql ..." or "sh"
fi

# As root: prepare directories, then re-exec this script as the postgres user.
# setpriv execs directly (no extra process), so postgres stays PID 1 and gets signals.
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    # Only chown what is not ours yet (a volume may come from an image with another uid).
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chown postgres:postgres /var/run/postgresql
    chmod 0700 "$PGDATA"
    chmod 2775 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set to initialise the database}"
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"

    # Password via a private temp file: never on a command line, never printed.
    pwfile="$(mktemp)"
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    echo "docker-entrypoint: initialising database cluster in $PGDATA"
    initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
    rm -f "$pwfile"

    # Remote clients (other containers) authenticate with scram-sha-256.
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"

    if [ "$db" != "postgres" ]; then
        # Temporary server on the unix socket only, so nothing sees a half-initialised database.
        pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
        # :"db" quotes the name as an identifier, whatever characters it holds.
        printf 'CREATE DATABASE :"db";\n' | psql -v ON_ERROR_STOP=1 -q --username="$user" --dbname=postgres -v db="$db"
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    echo "docker-entrypoint: database \"$db\" ready for user \"$user\""
fi

exec "$@"
