"""Draw decseg's layers and the imports between its packages: docs/layers.png.

    python docs/layers.py [--out docs/layers.png]

The layer order is read from pyproject.toml ([tool.importlinter], the contract that
tests/test_layers.py enforces), the imports from the code itself with grimp, so the picture
shows the real graph. Each box is a package with its modules; an arrow A -> B means some
module of A imports some module of B; each importing package has its own vertical lane. Every
arrow must point down; one that points up or sideways inside a layer would be drawn red.
The package root (decseg/__init__.py, the public API, and __main__.py) sits outside the layers
and is left out.
"""
from __future__ import annotations

import argparse
import tomllib
from collections import Counter
from pathlib import Path

import grimp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "decseg"

# One line per layer: what it holds (docs/ARCHITECTURE.md says why it sits where it does).
ROLES = {
    "cli": "one module per command; demo, report, benchmark harness",
    "train": "the training loop and what it needs",
    "inference": "prediction, maps, ONNX export, the checkpoint format",
    "accel": "execution levers that keep the mathematics",
    "methods": "a batch -> (losses, visuals); one file per method",
    "losses": "one function per term of the objective",
    "data": "dataset layout, preparation, loaders",
    "metrics": "toolbox-exact evaluator (no torch models)",
    "models": "the DEC-Seg network and generators",
    "config": "typed settings",
    "io": "atomic writes, safe torch.load, seeding",
    "files": "image extensions, stem index",
    "labels": "class-index masks, palette, label maps",
    "errors": "user-facing errors",
}


def read_layers() -> list[list[str]]:
    """The layers of the import-linter contract, top first, each a list of package names."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for contract in cfg["tool"]["importlinter"]["contracts"]:
        if contract["type"] == "layers":
            return [[p.strip().split(".", 1)[1] for p in layer.split("|")] for layer in contract["layers"]]
    raise SystemExit("pyproject.toml has no layers contract")


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def read_graph() -> tuple[dict[str, list[str]], Counter]:
    """Modules per package, and the number of importing module pairs per package pair."""
    graph = grimp.build_graph(PACKAGE)
    modules: dict[str, list[str]] = {}
    edges: Counter = Counter()
    for m in sorted(graph.modules):
        pkg = package_of(m)
        if pkg is None or pkg == "__main__":
            continue
        rest = m.split(".")[2:]
        if rest and rest[-1] != "__init__":
            modules.setdefault(pkg, []).append("/".join(rest))
        else:
            modules.setdefault(pkg, [])
        for imported in graph.find_modules_directly_imported_by(m):
            target = package_of(imported)
            if target is not None and target != pkg:
                edges[(pkg, target)] += 1
    # a subpackage shows as prepare/{a,b,...}
    for pkg, names in modules.items():
        groups: dict[str, list[str]] = {}
        flat = []
        for n in names:
            if "/" in n:
                head, tail = n.split("/", 1)
                groups.setdefault(head, []).append(tail)
            else:
                flat.append(n)
        for head, tails in groups.items():
            if head in flat:
                flat.remove(head)
            flat.append(f"{head}/{{{','.join(tails)}}}")
        modules[pkg] = sorted(flat)
    return modules, edges


def wrap(names: list[str], width: int = 84) -> str:
    lines, line = [], ""
    for n in names:
        piece = n if not line else f", {n}"
        if len(line) + len(piece) > width:
            lines.append(line + ",")
            line = n
        else:
            line += piece
    if line:
        lines.append(line)
    return "\n".join(lines)


def draw(out: Path) -> None:
    layers = read_layers()
    modules, edges = read_graph()
    level = {pkg: i for i, layer in enumerate(layers) for pkg in layer}
    unknown = sorted(set(modules) - set(level))
    if unknown:
        raise SystemExit(f"packages outside every layer: {unknown}")

    box_w, box_h, gap, band_gap = 5.2, 0.9, 0.16, 0.42
    x0 = 1.1
    # package boxes top to bottom, one band per layer
    pos: dict[str, float] = {}  # centre y of each package box
    bands = []
    y = 0.0
    for i, layer in enumerate(layers):
        top = y
        for pkg in layer:
            pos[pkg] = y - box_h / 2
            y -= box_h + gap
        y += gap
        bands.append((i, top, y))
        y -= band_gap
    height = -y

    fig, ax = plt.subplots(figsize=(12.0, height * 0.8 + 1.0))
    for i, top, bottom in bands:
        ax.add_patch(FancyBboxPatch((x0 - 0.9, bottom - 0.06), box_w + 1.0, top - bottom + 0.12,
                                    boxstyle="round,pad=0.02", fc="#f2f2f2" if i % 2 else "#e6ecf5",
                                    ec="none", zorder=0))
        ax.text(x0 - 0.45, (top + bottom) / 2, f"{len(layers) - i}", ha="center", va="center",
                fontsize=15, color="#555555", fontweight="bold")
    for pkg, yc in pos.items():
        ax.add_patch(FancyBboxPatch((x0, yc - box_h / 2), box_w, box_h, boxstyle="round,pad=0.02",
                                    fc="white", ec="#333333", lw=1.2, zorder=2))
        name = f"{pkg}/" if modules[pkg] else f"{pkg}.py"
        ax.text(x0 + 0.08, yc + box_h / 2 - 0.07, name, ha="left", va="top", fontsize=10.5,
                fontweight="bold", family="monospace", zorder=3)
        ax.text(x0 + 1.35, yc + box_h / 2 - 0.08, ROLES.get(pkg, ""), ha="left", va="top",
                fontsize=8.5, style="italic", color="#333333", zorder=3)
        if modules[pkg]:
            ax.text(x0 + 0.08, yc - 0.05, wrap(modules[pkg]), ha="left", va="top", fontsize=7.3,
                    family="monospace", color="#222222", zorder=3, linespacing=1.15)

    # imports on the right of the column: each importing package has its own vertical lane,
    # leaving the top of its box and reaching into each package it imports with an arrow
    order = list(pos)
    sources = [pkg for pkg in order if any(a == pkg for a, _ in edges)]
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#843c39"]
    colour_of = {pkg: palette[i % len(palette)] for i, pkg in enumerate(sources)}
    lane_gap = 0.42
    lane_x = {pkg: x0 + box_w + 0.35 + lane_gap * i for i, pkg in enumerate(sources)}
    incoming: dict[str, list[str]] = {}
    for a, b in sorted(edges, key=lambda e: sources.index(e[0])):
        incoming.setdefault(b, []).append(a)

    def arrow_y(a: str, b: str) -> float:
        # arrows into a box share its lower part, in lane order
        k, n = incoming[b].index(a), len(incoming[b])
        return pos[b] - box_h * 0.38 + box_h * 0.58 * (k / (n - 1) if n > 1 else 0.5)

    bad = []
    for a in sources:
        targets = [b for (s_, b) in edges if s_ == a]
        c = colour_of[a]
        ends = [arrow_y(a, b) for b in targets]
        xl = lane_x[a]
        y_out = pos[a] + box_h * 0.36  # leaves from the top of its box, above the arrows coming in
        ax.plot([x0 + box_w, xl], [y_out, y_out], color=c, lw=1.6, zorder=1, solid_capstyle="round")
        ax.plot([xl, xl], [min(ends + [y_out]), max(ends + [y_out])], color=c, lw=1.6, zorder=1)
        ax.text(xl, y_out + 0.06, a, rotation=90, ha="center", va="bottom", fontsize=7.5, color=c)
        for b in targets:
            yb = arrow_y(a, b)
            downward = level[b] > level[a]
            if not downward:
                bad.append(f"{a} -> {b}")
            ax.add_patch(FancyArrowPatch((xl, yb), (x0 + box_w + 0.02, yb), arrowstyle="-|>",
                                         mutation_scale=8, lw=1.1, color=c if downward else "red",
                                         zorder=1, shrinkA=0, shrinkB=0))
            ax.plot([xl], [yb], marker="o", ms=2.6, color=c, zorder=1)
    ax.set_title("decseg: layers (top imports down) and the imports between packages\n"
                 "from pyproject.toml's import-linter contract and grimp's import graph",
                 fontsize=11)
    ax.set_xlim(0, x0 + box_w + 0.7 + lane_gap * len(sources))
    ax.set_ylim(-height - 0.2, 0.3)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}: {len(pos)} packages, {len(edges)} package imports"
          + (f"; UPWARD OR SIDEWAYS: {', '.join(bad)}" if bad else ", all downward"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(Path(__file__).resolve().with_name("layers.png")))
    draw(Path(p.parse_args().out))


if __name__ == "__main__":
    main()
