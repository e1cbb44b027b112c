"""Tables written by the bot: Telegram users, their messages, bot heartbeats.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Plain op.create_table calls: valid on SQLAlchemy 1.4/alembic 1.8 (Debian 12) and SQLAlchemy 2.
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "tg_users",
        # Telegram user ids exceed 32 bits and are assigned by Telegram, hence no autoincrement.
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("username", sa.Text, nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger, primary_key=True),  # BIGSERIAL on PostgreSQL
        sa.Column("user_id", sa.BigInteger, sa.ForeignKey("tg_users.id"), nullable=False),
        sa.Column("text", sa.Text, nullable=True),  # stickers/photos have no text
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "bot_heartbeats",
        sa.Column("instance", sa.Text, primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("handled", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    op.drop_table("bot_heartbeats")
    op.drop_table("messages")
    op.drop_table("tg_users")
