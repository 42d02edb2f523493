"""jobs.kind and jobs.version (the dataset version a job made), and forgotten samples

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 02:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("kind", sa.String(20), nullable=False,
                                   server_default="build"))
        batch.add_column(sa.Column("version", sa.Integer(), nullable=True))
    op.create_table(
        "tombstones",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("dataset_id", sa.Integer(), sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("dataset_id", "key"),
    )


def downgrade() -> None:
    op.drop_table("tombstones")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("version")
        batch.drop_column("kind")
