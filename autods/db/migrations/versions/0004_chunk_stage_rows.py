"""chunk_stages rows instead of one timestamp column per stage; batches.ready_at

A stage added to the stage table needs no migration: its completion is a row.
``batches.ready_at`` marks a batch whose chunks are done and that waits for its
predecessor to hand over, instead of polling it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Stage name -> the column that recorded it before this revision.
_COLUMNS = {"ingest": "ingested_at", "preprocess": "preprocessed_at", "embed": "embedded_at",
            "label": "labelled_at"}


def _tables():
    chunks = sa.table("chunks", sa.column("id"),
                      *(sa.column(c, sa.DateTime(timezone=True)) for c in _COLUMNS.values()))
    stages = sa.table("chunk_stages", sa.column("chunk_id"), sa.column("stage"),
                      sa.column("done_at", sa.DateTime(timezone=True)))
    return chunks, stages


def upgrade() -> None:
    op.create_table(
        "chunk_stages",
        sa.Column("chunk_id", sa.Integer(), sa.ForeignKey("chunks.id"), primary_key=True),
        sa.Column("stage", sa.String(40), primary_key=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
    )
    chunks, stages = _tables()
    for stage, column in _COLUMNS.items():
        done = chunks.c[column]
        op.execute(stages.insert().from_select(
            ["chunk_id", "stage", "done_at"],
            sa.select(chunks.c.id, sa.literal(stage), done).where(done.is_not(None))))
    with op.batch_alter_table("chunks") as batch:
        for column in _COLUMNS.values():
            batch.drop_column(column)
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("ready_at")
    with op.batch_alter_table("chunks") as batch:
        for column in _COLUMNS.values():
            batch.add_column(sa.Column(column, sa.DateTime(timezone=True), nullable=True))
    chunks, stages = _tables()
    for stage, column in _COLUMNS.items():
        done = (sa.select(stages.c.done_at)
                .where(stages.c.chunk_id == chunks.c.id, stages.c.stage == stage)
                .scalar_subquery())
        op.execute(chunks.update().values({column: done}))
    op.drop_table("chunk_stages")
