#!/bin/sh
# api entrypoint: "migrate" | "serve" (default) | any other command.
# Migrations always run before serving, so the api never serves a half-migrated database.
set -eu
cd /app

migrate() {
    # alembic is idempotent (no-op at head); migrations/env.py holds an advisory lock
    # so concurrent migrators (e.g. two replicas) wait for each other.
    if ! python3 -m alembic upgrade head; then
        echo "entrypoint: migrations failed (database unreachable or migration error, see above); not starting" >&2
        exit 1
    fi
}

cmd="${1:-serve}"
case "$cmd" in
    migrate)
        migrate
        ;;
    serve)
        migrate
        # exec: uvicorn becomes PID 1 and receives SIGTERM directly.
        exec python3 -m uvicorn app.main:app --host 0.0.0.0 --port 8000
        ;;
    *)
        exec "$@"
        ;;
esac
