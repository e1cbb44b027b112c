"""Alembic environment: online migrations only, serialized by a PostgreSQL advisory lock."""
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool, text

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)

# Arbitrary constant shared by every migrator of this app ("AIDD" in ASCII).
MIGRATION_LOCK_ID = 0x41494444


def run_migrations_online() -> None:
    # Empty URL: libpq takes host/user/password/db from the PG* environment variables,
    # so passwords with any character work and never appear in a URL or a log line.
    engine = create_engine(
        "postgresql+psycopg2://",
        poolclass=pool.NullPool,
        connect_args={"connect_timeout": 5, "application_name": "aidd-api-migrate"},
    )
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            # Transaction-scoped lock: a second migrator blocks here until the first commits,
            # then sees the new alembic_version and has nothing to do.
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against the database")
run_migrations_online()
