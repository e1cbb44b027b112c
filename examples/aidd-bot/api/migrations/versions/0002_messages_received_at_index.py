"""Index messages.received_at for the api's "messages in the last 24h" count.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_received_at", "messages", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_messages_received_at", table_name="messages")
