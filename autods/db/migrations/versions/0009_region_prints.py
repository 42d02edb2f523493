"""features.thumb: the region print of an image, which confirms near duplicates

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 15:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("features") as batch:
        batch.add_column(sa.Column("thumb", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("features") as batch:
        batch.drop_column("thumb")
