"""The demo's report: metric table (markdown), loss/validation curves and a picture grid (PNG).

Everything here reads files that other stages wrote (``log.jsonl``, prediction PNGs, metric
JSON), so a report can be rebuilt from a finished run without training again.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from decseg.io import atomic_write, atomic_write_text
from decseg.metrics.evaluate import TOOLBOX_KEYS
from decseg.metrics.report import format_value, markdown_grid

# The table shows the toolbox's 13 keys, in its order, then our plain Dice of the binary map.
DICE_KEY = "dice@0.5"


def read_log(path: str | Path) -> tuple[list[dict], list[dict]]:
    """``log.jsonl`` -> (training rows with ``loss``, validation rows with ``val_dice``)."""
    train, val = [], []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by an interrupted run
        if "val_dice" in row:
            val.append(row)
        elif "loss" in row:
            train.append(row)
    return train, val


def metric_table(results: Mapping[str, Mapping[str, Mapping[str, float]]],
                 keys: Sequence[str] = TOOLBOX_KEYS + (DICE_KEY,)) -> str:
    """Markdown table: one row per metric key, one column per (method, set). Best value in bold."""
    methods = list(results)
    sets = sorted({s for m in methods for s in results[m]})
    cols = [(m, s) for s in sets for m in methods]
    rows = []
    for key in keys:
        vals = [results[m].get(s, {}).get(key) for m, s in cols]
        lower_is_better = key == "MAE"
        finite = [v for v in vals if isinstance(v, (int, float)) and not math.isnan(v)]
        best = (min(finite) if lower_is_better else max(finite)) if len(finite) > 1 else None
        cells = [f"**{text}**" if best is not None and v == best and finite.count(best) == 1 else text
                 for v, text in zip(vals, (format_value(v, nan="n/a") for v in vals))]
        rows.append([f"{key}{' (lower is better)' if lower_is_better else ''}", *cells])
    return markdown_grid(["metric", *(f"{m} ({s})" if len(sets) > 1 else m for m, s in cols)], rows)


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def smooth(values: Sequence[float], window: int = 5) -> np.ndarray:
    """Centred moving average (shorter at the ends): a minibatch loss is too noisy to read raw."""
    v = np.asarray(values, dtype=float)
    if len(v) < 3:
        return v
    k = np.ones(min(window, len(v)))
    return np.convolve(v, k, mode="same") / np.convolve(np.ones_like(v), k, mode="same")


def plot_curves(logs: Mapping[str, str | Path], path: str | Path) -> Path:
    """Training loss (total and supervised) and validation Dice against iterations, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (method, log) in enumerate(logs.items()):
        colour = f"C{i}"
        train, val = read_log(log)
        if train:
            it = [r["iter"] for r in train]
            loss = [r["loss"] for r in train]
            ax_loss.plot(it, loss, color=colour, alpha=0.25, lw=0.8)
            ax_loss.plot(it, smooth(loss), color=colour, label=f"{method}: total (smoothed)")
            if any(r.get("sup") is not None and r.get("sup") != r["loss"] for r in train):
                ax_loss.plot(it, smooth([r.get("sup", float("nan")) for r in train]), color=colour, ls="--",
                             alpha=0.8, label=f"{method}: supervised part (smoothed)")
        if val:
            ax_val.plot([r["iter"] for r in val], [r["val_dice"] for r in val], "o-", color=colour, label=method)
    ax_loss.set(title="training loss", xlabel="iteration", ylabel="loss")
    ax_loss.set_yscale("log")
    ax_val.set(title="validation Dice", xlabel="iteration", ylabel="Dice", ylim=(0, 1))
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    path = Path(path)
    _save_figure(fig, path)
    return path


def plot_grid(rows: Sequence[Mapping[str, np.ndarray]], path: str | Path, columns: Sequence[str]) -> Path:
    """A grid with one row per sample and one column per entry of ``columns`` (e.g. image,
    ground truth, baseline, DEC-Seg). Each row maps a column name to an HxW or HxWx3 uint8 array."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows)
    fig, axes = plt.subplots(n, len(columns), figsize=(2.2 * len(columns), 2.2 * n), squeeze=False)
    for r, row in enumerate(rows):
        for c, name in enumerate(columns):
            ax = axes[r][c]
            img = row[name]
            ax.imshow(img, cmap=None if img.ndim == 3 else "gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=10)
            label = row.get(f"{name}__label")
            if label is not None:
                ax.set_xlabel(str(label), fontsize=8)
    fig.tight_layout()
    path = Path(path)
    _save_figure(fig, path)
    return path


def write_report(path: str | Path, *, title: str, intro: str, results, curves: str | None,
                 grid: str | None, details: Mapping[str, str] | None = None, notes: str = "") -> Path:
    """Assemble ``report.md``; figure paths are written relative to the report's folder."""
    path = Path(path)
    parts = [f"# {title}", "", intro, "", "## Metrics", "", metric_table(results), ""]
    parts += ["Toolbox keys as `decseg evaluate` computes them (mean over images and over the 256 "
              "thresholds); `dice@0.5` is the plain Dice of the binary 0/255 map, averaged over images.", ""]
    if curves:
        parts += ["## Training curves", "", f"![loss and validation curves]({curves})", ""]
    if grid:
        parts += ["## Examples", "", "Columns: input image, ground truth, then each method's binary "
                  "prediction (Dice of that image below it).", "", f"![prediction grid]({grid})", ""]
    if details:
        parts += ["## Run details", ""] + [f"- **{k}**: {v}" for k, v in details.items()] + [""]
    if notes:
        parts += ["## Notes", "", notes, ""]
    atomic_write_text(path, "\n".join(parts))
    return path
