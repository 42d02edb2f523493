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
COLUMNS = ("dataset_id", "band_no", "value", "asset_id")


def _band_table(name: str) -> sa.TableClause:
    return sa.table(name, *(sa.column(c) for c in COLUMNS))


def upgrade() -> None:
    with op.batch_alter_table("assets") as batch:
        batch.add_column(sa.Column("pack_offset", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        for table in BANDS:
            for column in ("dataset_id", "asset_id"):
                op.drop_constraint(f"{table}_{column}_fkey", table, type_="foreignkey")
        return
    for table in BANDS:  # SQLite: the same table without its (unnamed) foreign keys
        op.create_table(
            f"{table}_new",
            sa.Column("dataset_id", sa.Integer(), primary_key=True),
            sa.Column("band_no", sa.Integer(), primary_key=True),
            sa.Column("value", sa.BigInteger(), primary_key=True),
            sa.Column("asset_id", sa.Integer(), primary_key=True),
        )
        old = _band_table(table)
        op.execute(_band_table(f"{table}_new").insert().from_select(COLUMNS, sa.select(*old.c)))
        op.drop_table(table)
        op.rename_table(f"{table}_new", table)


def downgrade() -> None:
    assets, datasets = sa.table("assets", sa.column("id")), sa.table("datasets", sa.column("id"))
    for table in BANDS:
        bands = _band_table(table)
        op.execute(bands.delete().where(~bands.c.asset_id.in_(sa.select(assets.c.id))
                                        | ~bands.c.dataset_id.in_(sa.select(datasets.c.id))))
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(f"{table}_dataset_id_fkey", "datasets",
                                     ["dataset_id"], ["id"])
            batch.create_foreign_key(f"{table}_asset_id_fkey", "assets", ["asset_id"], ["id"])
    with op.batch_alter_table("assets") as batch:
        batch.drop_column("pack_offset")
