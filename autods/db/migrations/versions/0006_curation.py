"""Curation: a second perceptual hash, text dedup features and their LSH bands, filtered
items' split and dedup score, the band radius of a dataset's pHash index

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 05:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("band_k", sa.Integer(), nullable=True))
    with op.batch_alter_table("features") as batch:
        batch.add_column(sa.Column("check_hash", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("text_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("minhash", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("language", sa.String(8), nullable=True))
        batch.add_column(sa.Column("language_score", sa.Float(), nullable=True))
        batch.create_index("ix_features_text_sha256", ["text_sha256"])
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("dedup_score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("split", sa.String(10), nullable=True))
    op.create_table(
        "minhash_bands",
        sa.Column("dataset_id", sa.Integer(), sa.ForeignKey("datasets.id"), primary_key=True),
        sa.Column("band_no", sa.Integer(), primary_key=True),
        sa.Column("value", sa.BigInteger(), primary_key=True),
        sa.Column("asset_id", sa.Integer(), sa.ForeignKey("assets.id"), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("minhash_bands")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("split")
        batch.drop_column("dedup_score")
    with op.batch_alter_table("features") as batch:
        batch.drop_index("ix_features_text_sha256")
        for name in ("language_score", "language", "minhash", "text_sha256", "check_hash"):
            batch.drop_column(name)
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("band_k")
