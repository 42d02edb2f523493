"""datasets.band_size and datasets.banded: the size a dataset's band index is laid out
for, and how many published images it holds

Existing datasets keep their exact bands (band_size NULL) until their next batch step
counts what they have published and lays the index out for that.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 14:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = ("dataset_id", "band_no", "value", "asset_id")


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("band_size", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("banded", sa.Integer(), nullable=False, server_default="0"))


def _exact_bands(k: int) -> list[tuple[int, int]]:
    """The k + 1 exact bands older code reads (as of this revision)."""
    edges = [round(i * 64 / (k + 1)) for i in range(k + 2)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def downgrade() -> None:
    """Rebuild each planned index in the exact bands older code reads: k + 1 pHash bands,
    five check-hash bands from band 100, for the published images."""
    datasets = sa.table("datasets", sa.column("id"), sa.column("band_k"), sa.column("near_k"),
                        sa.column("band_size"))
    assets = sa.table("assets", sa.column("id"), sa.column("dataset_id"),
                      sa.column("kept_item_id"))
    features = sa.table("features", sa.column("asset_id"), sa.column("phash", sa.BigInteger),
                        sa.column("check_hash", sa.BigInteger))
    bands = sa.table("phash_bands", *(sa.column(c) for c in COLUMNS))
    conn = op.get_bind()
    planned = conn.execute(sa.select(datasets.c.id,
                                     sa.func.coalesce(datasets.c.band_k, datasets.c.near_k))
                           .where(datasets.c.band_size.is_not(None))).all()
    for dataset_id, k in planned:
        conn.execute(bands.delete().where(bands.c.dataset_id == dataset_id))
        for column, base, radius in ((features.c.phash, 0, k),
                                     (features.c.check_hash, 100, 4)):
            for n, (lo, hi) in enumerate(_exact_bands(radius)):
                mask = sa.literal_column(str((1 << (hi - lo)) - 1))
                value = (column if hi - lo == 64
                         else column.op(">>")(sa.literal_column(str(lo))).op("&")(mask))
                conn.execute(bands.insert().from_select(COLUMNS, sa.select(
                    assets.c.dataset_id, sa.literal_column(str(base + n)), value, assets.c.id)
                    .join(features, features.c.asset_id == assets.c.id)
                    .where(assets.c.dataset_id == dataset_id,
                           assets.c.kept_item_id.is_not(None), column.is_not(None))))
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("banded")
        batch.drop_column("band_size")
