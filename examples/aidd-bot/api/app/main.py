"""AIDD Bot api: health and statistics over the tables the bot writes.

Endpoints return plain dicts so the code runs on pydantic v1 (Debian's FastAPI 0.92) and v2.
"""
import logging

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import create_engine, text

# No URL: libpq reads PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE from the environment.
# Short connect/statement timeouts so /health answers quickly even when the database is gone.
engine = create_engine(
    "postgresql+psycopg2://",
    pool_pre_ping=True,
    pool_size=5,
    connect_args={
        "connect_timeout": 3,
        "options": "-c statement_timeout=5000",
        "application_name": "aidd-api",
    },
)

app = FastAPI(title="AIDD Bot api")


class _SkipHealthAccessLog(logging.Filter):
    # The container healthcheck hits /health every few seconds; keep it out of the access log.
    def filter(self, record: logging.LogRecord) -> bool:
        return " /health " not in record.getMessage()


logging.getLogger("uvicorn.access").addFilter(_SkipHealthAccessLog())


def _reason(exc: Exception) -> str:
    """First line of the driver's message: short, and libpq never includes the password."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return (lines[0] if lines else type(orig).__name__)[:200]


def _error(reason: str) -> JSONResponse:
    return JSONResponse(status_code=503, content={"status": "error", "database": reason})


@app.get("/health")
def health():
    try:
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as exc:  # any failure means "not healthy", with the reason
        return _error(_reason(exc))
    if version is None:
        return _error("not migrated")
    return {"status": "ok", "database": "ok", "migration": version}


STATS_SQL = text(
    """
    SELECT
      (SELECT count(*) FROM tg_users) AS users,
      (SELECT count(*) FROM messages) AS messages,
      (SELECT count(*) FROM messages WHERE received_at > now() - interval '24 hours') AS messages_24h,
      (SELECT max(last_seen_at) FROM bot_heartbeats) AS bot_last_seen,
      (SELECT coalesce(sum(handled), 0)::bigint FROM bot_heartbeats) AS bot_handled
    """
)


@app.get("/stats")
def stats():
    try:
        with engine.connect() as conn:
            row = conn.execute(STATS_SQL).mappings().one()
    except Exception as exc:
        return _error(_reason(exc))
    last_seen = row["bot_last_seen"]
    return {
        "users": int(row["users"]),
        "messages": int(row["messages"]),
        "messages_24h": int(row["messages_24h"]),
        "bot_last_seen": last_seen.isoformat() if last_seen is not None else None,
        "bot_handled": int(row["bot_handled"]),
    }
