"""batches.dispatched_at: when a batch's chord was last sent, for the stall watchdog

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 22:05:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("dispatched_at")
