#!/bin/sh
# api entrypoint: "migrate" | "serve" (default) | any other command.
# Expand/contract: on a server, migrations run only as the deploy's one-off `migrate` step, before the new
# release goes live, and every migration keeps the previous release working. So `serve` never migrates
# there: an older release brought back by a rollback starts against a schema one step newer than its own
# (its alembic would fail with "Can't locate revision"). MIGRATE_ON_START=1, set only by the local compose
# file, migrates first for `docker compose up` on a laptop.
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
        if [ "${MIGRATE_ON_START:-0}" = 1 ]; then migrate; fi
        # exec: uvicorn becomes PID 1 and receives SIGTERM directly.
        exec python3 -m uvicorn app.main:app --host 0.0.0.0 --port 8000
        ;;
    *)
        exec "$@"
        ;;
esac
