"""The report of ``decseg compare``: ``DIR/results.json``, ``DIR/report.md`` and one PNG per test set.

Everything is computed from the cells' ``cell.json`` files, so the report can be rebuilt from a
finished comparison without training (``decseg compare`` with the same arguments does that when
every cell is finished). Per test set and (method, ratio): the mean and the sample standard
deviation (ddof = 1) over seeds of Dice, IoU and HD95 (binary sets: the toolbox's ``meanDic``,
``meanIoU`` and ``hd95``; sets with K > 2 classes: ``meanDice``, ``meanIoU``, ``HD95``, means over
the foreground classes). A paired t-test over matched seeds (``scipy.stats.ttest_rel``) compares
every method with the first one at the same ratio.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from decseg.io import atomic_write, atomic_write_text

ALL_LABELS = "all"
#: the columns of the table: (shown name, binary key, K > 2 key, higher is better)
METRICS = (("Dice", "meanDic", "meanDice", True), ("IoU", "meanIoU", "meanIoU", True),
           ("HD95", "hd95", "HD95", False))
MIN_PAIRED_N = 3  # below this a p-value over seeds says nothing


def metric_value(metrics: dict, name: str) -> float | None:
    """The value of a table column ("Dice", "IoU", "HD95") in one set's metrics, or None."""
    for shown, binary, multi, _ in METRICS:
        if shown == name:
            for key in ((multi, binary) if "meanDice" in metrics else (binary, multi)):
                v = metrics.get(key)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    return float(v)
            return None
    raise KeyError(name)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; nan for one value)."""
    v = np.asarray(values, dtype=float)
    if not len(v):
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan


def _groups(methods: list[str], ratios: list[str]) -> list[tuple[str, str]]:
    return [(m, ALL_LABELS if m == "full" else r) for r in ratios for m in methods if m != "full"] + \
           ([("full", ALL_LABELS)] if "full" in methods else [])


def summarize(records: list[dict], methods: list[str], ratios: list[str], seeds: list[int]) -> dict:
    """{set: [row per (method, ratio)]} with per-seed values and mean/std of each metric."""
    by_key = {(r["method"], r["ratio"], r["seed"]): r for r in records}
    sets = sorted({s for r in records for s in r.get("metrics", {})})
    out = {}
    for set_name in sets:
        rows = []
        for method, ratio in _groups(methods, ratios):
            cells = [by_key.get((method, ratio, s)) for s in seeds]
            present = [c for c in cells if c is not None and set_name in c.get("metrics", {})]
            row = {"method": method, "ratio": ratio, "n": len(present),
                   "labeled": [c["labeled"] for c in present],
                   "labeled_fraction": float(np.mean([c["labeled_fraction"] for c in present])) if present else math.nan}
            for shown, *_ in METRICS:
                values = {c["seed"]: metric_value(c["metrics"][set_name], shown) for c in present}
                values = {s: v for s, v in values.items() if v is not None}
                mean, std = mean_std(list(values.values()))
                row[shown] = {"mean": mean, "std": std, "n": len(values), "values": values}
            rows.append(row)
        out[set_name] = rows
    return out


def paired_tests(summary: dict, methods: list[str], ratios: list[str]) -> dict:
    """{set: [every method vs the first, per ratio]}: n matched seeds, mean Dice difference, t, p."""
    from scipy import stats

    reference = methods[0]
    out = {}
    for set_name, rows in summary.items():
        index = {(r["method"], r["ratio"]): r for r in rows}
        tests = []
        for ratio in ratios:
            ref = index.get((reference, ALL_LABELS if reference == "full" else ratio))
            for method in methods[1:]:
                row = index.get((method, ALL_LABELS if method == "full" else ratio))
                if ref is None or row is None:
                    continue
                a, b = ref["Dice"]["values"], row["Dice"]["values"]
                seeds = sorted(set(a) & set(b))
                diffs = [b[s] - a[s] for s in seeds]
                t = p = None
                if len(seeds) >= 2 and np.ptp(diffs) > 0:
                    res = stats.ttest_rel([b[s] for s in seeds], [a[s] for s in seeds])
                    t, p = float(res.statistic), float(res.pvalue)
                tests.append({"ratio": ratio, "method": method, "reference": reference, "n": len(seeds),
                              "mean_difference": float(np.mean(diffs)) if diffs else math.nan,
                              "t": t, "p": p, "meaningful": len(seeds) >= MIN_PAIRED_N})
        out[set_name] = tests
    return out


def cost(records: list[dict], methods: list[str]) -> dict:
    """{method: median iteration seconds and peak memory over its cells' train_stats.json}."""
    out = {}
    for method in methods:
        stats = [r["train_stats"] for r in records if r["method"] == method and r.get("train_stats")]
        seconds = [s["iteration_seconds"] for s in stats if s.get("iteration_seconds") is not None]
        gpu = [s["peak_gpu_gb"] for s in stats if s.get("peak_gpu_gb") is not None]
        rss = [s["peak_rss_gb"] for s in stats if s.get("peak_rss_gb") is not None]
        out[method] = {
            "cells": len(stats),
            "iteration_seconds": float(np.median(seconds)) if seconds else None,
            "peak_gpu_gb": float(max(gpu)) if gpu else None,
            "peak_rss_gb": float(max(rss)) if rss else None,
            "peak_rss_exact": all(s.get("peak_rss_exact") for s in stats) if stats else None,
            "devices": sorted({f"{s.get('device')} x{s.get('world_size', 1)}" for s in stats}),
        }
    return out


def _file_name(set_name: str) -> str:
    return "dice_vs_labels_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", set_name) + ".png"


def plot_label_efficiency(rows: list[dict], ratios: list[str], path: Path, title: str) -> Path:
    """Dice against the labeled fraction, one line per method (error bars: std over seeds);
    the fully supervised upper bound as a dashed line with its std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for i, method in enumerate(methods):
        mine = [r for r in rows if r["method"] == method and r["n"]]
        if method == "full":
            for r in mine:
                m, s = r["Dice"]["mean"], r["Dice"]["std"]
                ax.axhline(m, color="k", ls="--", lw=1, label=f"full (all {r['labeled'][0]} labels)")
                if math.isfinite(s):
                    ax.axhspan(m - s, m + s, color="k", alpha=0.08)
            continue
        mine.sort(key=lambda r: r["labeled_fraction"])
        x = [r["labeled_fraction"] for r in mine]
        y = [r["Dice"]["mean"] for r in mine]
        e = [r["Dice"]["std"] if math.isfinite(r["Dice"]["std"]) else 0 for r in mine]
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, color=f"C{i}", label=method)
    ticks = sorted({round(r["labeled_fraction"], 4) for r in rows if r["n"] and r["method"] != "full"})
    if ticks:
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set(title=title, xlabel="labeled fraction of the training pool", ylabel="Dice (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    if ax.lines or ax.collections:
        ax.legend(fontsize=8)
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def _fmt(mean: float, std: float, digits: int = 4) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(std) else f"{mean:.{digits}f}"


def _labels_text(row: dict) -> str:
    n = sorted(set(row["labeled"]))
    count = "/".join(str(v) for v in n)
    return f"all ({count})" if row["ratio"] == ALL_LABELS else f"{row['ratio']} ({count} images)"


def _cost_line(method: str, c: dict) -> list[str]:
    secs = f"{c['iteration_seconds']:.3f}" if c["iteration_seconds"] is not None else "n/a"
    if c["peak_gpu_gb"] is not None:
        mem = f"{c['peak_gpu_gb']:.2f} GB GPU"
    elif c["peak_rss_gb"] is not None:
        mem = f"{c['peak_rss_gb']:.2f} GB RSS" + ("" if c["peak_rss_exact"] else " (lower bound)")
    else:
        mem = "n/a"
    return [method, secs, mem, ", ".join(c["devices"]) or "n/a", str(c["cells"])]


def write_compare_report(out: str | Path, cell_names: list[str], methods: list[str], ratios: list[str],
                         seeds: list[int], records: list[dict | None]) -> dict:
    """results.json, report.md and the plots from the cells' records (None: cell not finished)."""
    from decseg.metrics.report import markdown_grid

    out = Path(out)
    done = [r for r in records if r is not None]
    missing = [n for n, r in zip(cell_names, records) if r is None]
    summary = summarize(done, methods, ratios, seeds)
    paired = paired_tests(summary, methods, ratios)
    costs = cost(done, methods)
    plots = {}
    for set_name, rows in summary.items():
        plots[set_name] = plot_label_efficiency(rows, ratios, out / _file_name(set_name),
                                                f"label efficiency on {set_name}").name
    results = {
        "methods": methods, "ratios": ratios, "seeds": seeds, "missing": missing,
        "cells": [{k: r[k] for k in ("method", "ratio", "seed", "labeled", "labeled_fraction", "best_iteration",
                                     "best_val_dice", "metrics", "train_stats")} | {"dir": f"{r['method']}/{r['ratio']}/seed{r['seed']}"}
                  for r in done],
        "summary": summary, "paired": paired, "cost": costs, "plots": plots,
    }
    atomic_write_text(out / "results.json", json.dumps(_finite(results), indent=2, default=_json_default) + "\n")

    iterations = sorted({r["iterations"] for r in done})
    parts = ["# decseg compare", "",
             f"Methods {', '.join(methods)}; label ratios {', '.join(ratios)}; seeds {', '.join(map(str, seeds))}; "
             f"{len(done)} of {len(cell_names)} cells finished"
             + (f" (missing: {', '.join(missing)})" if missing else "") + ". "
             f"Training iterations per cell: {', '.join(map(str, iterations)) or 'n/a'}. "
             + ("Each cell's checkpoint is its `best.pt`, picked on the val split (never on a test set)."
                if any(r.get("best_val_dice") is not None for r in done) else
                "The data has no val split, so each cell's `best.pt` is its last weights (model selection "
                "never looks at a test set)."), ""]
    for set_name, rows in summary.items():
        parts += [f"## Test set `{set_name}`", ""]
        table = [[_labels_text(r), r["method"], str(r["n"])]
                 + [_fmt(r[m]["mean"], r[m]["std"], 2 if m == "HD95" else 4) for m, *_ in METRICS] for r in rows]
        parts += [markdown_grid(["labels", "method", "seeds", "Dice", "IoU", "HD95 (px, lower is better)"], table), ""]
        tests = paired[set_name]
        if tests:
            lines = []
            for t in tests:
                p = "n/a" if t["p"] is None else f"{t['p']:.3g}"
                note = "" if t["meaningful"] else f"n < {MIN_PAIRED_N}: not meaningful"
                if t["p"] is None and t["n"] >= 2:
                    note = "identical differences: no test" if not note else note
                lines.append([t["ratio"] if t["method"] != "full" else f"{t['ratio']} vs all", t["method"],
                              t["reference"], str(t["n"]), f"{t['mean_difference']:+.4f}", p, note])
            parts += [f"Paired t-test over matched seeds of Dice (`scipy.stats.ttest_rel`), each method "
                      f"minus `{methods[0]}`:", "",
                      markdown_grid(["labels", "method", "vs", "n", "mean Δ Dice", "p", "note"], lines), ""]
        parts += [f"![Dice vs labeled fraction on {set_name}]({plots[set_name]})", ""]
    parts += ["## Cost per method", "",
              "Median time of a training iteration (loading the batch, forward, backward, update; after "
              "warm-up) and the peak memory, from each cell's `train_stats.json` (median and maximum over "
              "the cells of the method).", "",
              markdown_grid(["method", "iteration (s)", "peak memory", "device x processes", "cells"],
                            [_cost_line(m, costs[m]) for m in methods]), ""]
    parts += ["## Notes", "",
              "- Dice and IoU are the toolbox's `meanDic` / `meanIoU` on binary sets (`decseg evaluate`), "
              "`meanDice` / `meanIoU` over the foreground classes for sets with more classes; HD95 is in "
              "pixels and averages only the images where it is defined.",
              "- ± is the sample standard deviation over seeds (ddof = 1); with one seed only the mean is shown.",
              "- Each seed draws its own labeled split (`splits/<ratio>/seed<k>`) shared by every method, "
              "and is the cell's `train.seed`. `full` trains `supervised` on every training label.",
              f"- A paired test over fewer than {MIN_PAIRED_N} seeds is reported but not meaningful.",
              "- The numbers per cell: `<method>/<ratio>/seed<k>/cell.json`; all of them: `results.json`.", ""]
    atomic_write_text(out / "report.md", "\n".join(parts))
    return results


def _finite(o):
    """NaN and infinities become null: results.json is strict JSON."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)
