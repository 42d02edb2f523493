"""Query answers written the way the CLI's ``--format`` asks: a table, JSON, JSON lines or
parquet."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def write_rows(table: pa.Table, fmt: str, output: Path | None, console: Console) -> None:
    """Write ``table`` as ``fmt`` to ``output``, or to the console when there is none."""
    if fmt == "parquet":
        pq.write_table(table, output)
        return
    if fmt == "table":
        view = Table(*table.column_names)
        for row in table.to_pylist():
            view.add_row(*("" if v is None else str(v) for v in row.values()))
        text = None
    elif fmt == "json":
        text = _json(table.to_pylist()) + "\n"
    else:
        text = "".join(_json(row) + "\n" for row in table.to_pylist())
    if output is not None:
        if text is None:
            with output.open("w") as f:
                Console(file=f, width=200).print(view)
        else:
            output.write_text(text)
    elif text is None:
        console.print(view)
    else:
        sys.stdout.write(text)
