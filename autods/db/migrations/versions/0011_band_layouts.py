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
    conn = op.get_bind()
    planned = conn.execute(sa.text(
        "SELECT id, coalesce(band_k, near_k) FROM datasets WHERE band_size IS NOT NULL")).all()
    for dataset_id, k in planned:
        conn.execute(sa.text("DELETE FROM phash_bands WHERE dataset_id = :d"), {"d": dataset_id})
        for column, base, radius in (("phash", 0, k), ("check_hash", 100, 4)):
            for n, (lo, hi) in enumerate(_exact_bands(radius)):
                value = (f"f.{column}" if hi - lo == 64
                         else f"(f.{column} >> {lo}) & {(1 << (hi - lo)) - 1}")
                conn.execute(sa.text(
                    f"INSERT INTO phash_bands (dataset_id, band_no, value, asset_id) "
                    f"SELECT a.dataset_id, {base + n}, {value}, a.id FROM assets a "
                    f"JOIN features f ON f.asset_id = a.id WHERE a.dataset_id = :d "
                    f"AND a.kept_item_id IS NOT NULL AND f.{column} IS NOT NULL"),
                    {"d": dataset_id})
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("banded")
        batch.drop_column("band_size")
