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
    """A table cell: an integer or a word as it is, a number to 4 decimals, NaN or a missing value as ``nan``."""
    if isinstance(value, (int, str)):
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


HD95_CHOICES = {"monai": "HD95", "medpy": "HD95_medpy"}


def class_names_of(result: dict) -> list[str]:
    """The class names of a set's per-class keys (``Dice/<name>``), in order."""
    return [k.split("/", 1)[1] for k in result if k.startswith("Dice/")]


def format_class_table(results: dict[str, dict], hd95: str = "monai") -> str:
    """Per-class rows (and a mean row for K > 2) of the sets with per-class keys; '' if none.

    ``hd95``: which definition the HD95 column shows, "monai" or "medpy".
    """
    hd_key = HD95_CHOICES[hd95]
    header = ["set", "class", "Dice", "IoU", hd_key, "ASD", "n", "unit"]
    rows = []
    for name, r in results.items():
        classes = class_names_of(r)
        if not classes:
            continue
        n = r.get("n_volumes", r.get("n_images"))
        unit = r.get("distance_unit", "pixel")
        kind = "volumes" if "n_volumes" in r else "images"
        first = len(rows)
        if "meanDice" in r:
            rows.append(["", "mean", *(format_value(r.get(k)) for k in ("meanDice", "meanIoU", hd_key, "ASD")),
                         f"{n} {kind}", unit])
        for c in classes:
            rows.append(["", c, *(format_value(r.get(f"{k}/{c}")) for k in ("Dice", "IoU", hd_key, "ASD")),
                         f"{n} {kind}", unit])
        rows[first][0] = name
    if not rows:
        return ""
    return _grid([header, *rows])


def _grid(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i <= 1 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_results(results: dict[str, dict], hd95: str = "monai") -> str:
    """The printed tables: toolbox numbers of the binary sets, then per-class (volume) numbers."""
    if hd95 not in HD95_CHOICES:
        raise ValueError(f"hd95 must be one of {', '.join(HD95_CHOICES)}, got {hd95!r}")
    binary = {n: r for n, r in results.items() if "meanDic" in r}
    keys = TABLE_KEYS if hd95 == "monai" else tuple("hd95_medpy" if k == "hd95" else k for k in TABLE_KEYS)
    parts = [format_table(binary, keys)] if binary else []
    classes = format_class_table(results, hd95)
    if classes:
        parts.append(classes)
    return "\n\n".join(parts)


def result_keys(results: dict[str, dict]) -> tuple[str, ...]:
    """Columns for files: ALL_KEYS for binary per-image sets; else every key in first-seen order."""
    seen = [k for r in results.values() for k in r]
    if set(seen) <= set(ALL_KEYS):
        return ALL_KEYS
    return tuple(dict.fromkeys(seen))


def markdown_grid(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table of cells already formatted: first column left-aligned, the others right."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(results: dict[str, dict], keys=None) -> str:
    """One row per set, one column per key (default :func:`result_keys`)."""
    keys = result_keys(results) if keys is None else keys
    return markdown_grid(["set", *keys], _set_rows(results, keys)) + "\n"


def csv_table(results: dict[str, dict], keys=None) -> str:
    keys = result_keys(results) if keys is None else keys
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
