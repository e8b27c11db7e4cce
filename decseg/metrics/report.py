"""Tables and files for evaluation results: {set name: {key: value}}."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Iterable, Sequence

from decseg.metrics.evaluate import EXTRA_KEYS, TOOLBOX_KEYS
from decseg.io import atomic_write_text

# Columns of the printed table: the numbers papers quote most, then the extras.
TABLE_KEYS = ("meanDic", "meanIoU", "wFm", "Sm", "meanEm", "maxEm", "MAE", "dice@0.5", "hd95", "n_images")
ALL_KEYS = TOOLBOX_KEYS + EXTRA_KEYS


def format_value(value, nan: str = "NaN") -> str:
    """A table cell: an integer as it is, a number to 4 decimals, NaN or a missing value as ``nan``."""
    if isinstance(value, int):
        return str(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return nan
    return f"{value:.4f}"


def _set_rows(results: dict[str, dict], keys: Sequence[str]) -> list[list[str]]:
    return [[name, *(format_value(r.get(k)) for k in keys)] for name, r in results.items()]


def format_table(results: dict[str, dict], keys=TABLE_KEYS) -> str:
    """A fixed-width text table, one row per set."""
    rows = [["set", *keys], *_set_rows(results, keys)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown_grid(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table of cells already formatted: first column left-aligned, the others right."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(results: dict[str, dict], keys=ALL_KEYS) -> str:
    """One row per set, one column per key."""
    return markdown_grid(["set", *keys], _set_rows(results, keys)) + "\n"


def csv_table(results: dict[str, dict], keys=ALL_KEYS) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["set", *keys])
    for name, r in results.items():
        writer.writerow([name, *(repr(r[k]) if isinstance(r.get(k), float) else r.get(k) for k in keys)])
    return buf.getvalue()


def write_json(path: str | Path, results: dict[str, dict]) -> None:
    """JSON {set: {key: value}}; undefined values are written as NaN (Python's json reads them)."""
    atomic_write_text(path, json.dumps(results, indent=2) + "\n")


def write_markdown(path: str | Path, results: dict[str, dict]) -> None:
    atomic_write_text(path, markdown_table(results))


def write_csv(path: str | Path, results: dict[str, dict]) -> None:
    atomic_write_text(path, csv_table(results))
