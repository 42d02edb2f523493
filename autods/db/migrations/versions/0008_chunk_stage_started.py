"""chunk_stages.started_at: when the stage began on the chunk

With the completion time it splits each chunk stage's time into its queue wait (since the
previous stage of the chunk was done) and its own work, which the dataset report plots.
Rows written before this revision have none.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 13:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chunk_stages") as batch:
        batch.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chunk_stages") as batch:
        batch.drop_column("started_at")
