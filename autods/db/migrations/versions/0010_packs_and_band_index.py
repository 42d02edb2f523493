"""assets.pack_offset (an asset's bytes at this offset of a chunk's pack); the band
indexes lose their foreign keys

The band tables are indexes that only the preprocess stage writes, from asset rows it has
just read; checking two foreign keys on each of the ~11 rows an image adds cost as much
as inserting them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 17:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BANDS = ("phash_bands", "minhash_bands")


def upgrade() -> None:
    with op.batch_alter_table("assets") as batch:
        batch.add_column(sa.Column("pack_offset", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        for table in BANDS:
            for column in ("dataset_id", "asset_id"):
                op.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_{column}_fkey")
        return
    for table in BANDS:  # SQLite: the same table without its (unnamed) foreign keys
        op.create_table(
            f"{table}_new",
            sa.Column("dataset_id", sa.Integer(), primary_key=True),
            sa.Column("band_no", sa.Integer(), primary_key=True),
            sa.Column("value", sa.BigInteger(), primary_key=True),
            sa.Column("asset_id", sa.Integer(), primary_key=True),
        )
        op.execute(f"INSERT INTO {table}_new SELECT dataset_id, band_no, value, asset_id "
                   f"FROM {table}")
        op.drop_table(table)
        op.rename_table(f"{table}_new", table)


def downgrade() -> None:
    for table in BANDS:
        op.execute(f"DELETE FROM {table} WHERE asset_id NOT IN (SELECT id FROM assets) "
                   f"OR dataset_id NOT IN (SELECT id FROM datasets)")
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(f"{table}_dataset_id_fkey", "datasets",
                                     ["dataset_id"], ["id"])
            batch.create_foreign_key(f"{table}_asset_id_fkey", "assets", ["asset_id"], ["id"])
    with op.batch_alter_table("assets") as batch:
        batch.drop_column("pack_offset")
