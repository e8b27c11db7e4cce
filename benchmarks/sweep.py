"""Sweep input size x batch for the project's training step (and the released-style reference),
one fresh process per point so each peak RSS belongs to that point alone, then draw the curves.

Batch B means B_l + B_u with B_u = B // 2 (the paper's 3 + 3 for B = 6). B = 2 (1 + 1) cannot
train the full DEC-Seg: the perturbed pass would see one sample and BatchNorm needs two, so the
sweep reports it as invalid rather than silently changing the split.

    python benchmarks/sweep.py --out benchmarks/results --steps 2 --warmup 1
    python benchmarks/sweep.py --out benchmarks/results --plot-only   # redraw from the JSON files

Results: ``OUT/<profile>_S<size>_B<batch>.json`` per point, ``OUT/sweep.json`` (all points),
``OUT/scaling.png``. Points already measured are skipped unless ``--force``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from decseg.cli.main import add_set_arg

HERE = Path(__file__).resolve().parent
PROFILES = {
    # name: (command prefix, config overrides, experimental levers)
    "project": (["-m", "decseg", "benchmark", "train"], [], []),
    "project_ckpt": (["-m", "decseg", "benchmark", "train"], ["train.checkpointing=true"], []),
    "project_fp32": (["-m", "decseg", "benchmark", "train"], ["train.amp=off"], []),
    # the defaults minus the memory settings, to show what they bring
    "project_plain": (["-m", "decseg", "benchmark", "train"],
                      ["train.optimizer_in_backward=false", "train.cpu_memory=system"], []),
    "released": ([str(HERE / "released_style.py"), "train"], [], []),
}


def split(batch: int) -> tuple[int, int]:
    return batch - batch // 2, batch // 2


def run_point(profile: str, size: int, batch: int, args, out: Path) -> dict:
    path = out / f"{profile}_S{size}_B{batch}.json"
    if path.exists() and not args.force:
        return json.loads(path.read_text())
    bl, bu = split(batch)
    if bu < 2:
        return {"profile": profile, "size": size, "batch": batch, "status": "invalid",
                "reason": f"{bl}+{bu}: the perturbed pass needs >= 2 unlabeled samples (BatchNorm)"}
    prefix, extra, levers = PROFILES[profile]
    cmd = [sys.executable, *prefix, "--size", str(size), "--batch-labeled", str(bl), "--batch-unlabeled", str(bu),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--json", str(path),
           "--set", "model.pretrained=false", "--set", f"model.encoder={args.encoder}"]
    for o in extra + list(args.overrides):
        cmd += ["--set", o]
    for lever in levers:
        cmd += ["--lever", lever]
    env = dict(os.environ)
    if args.max_rss_gb:
        env["DECSEG_BENCH_MAX_RSS_GB"] = str(args.max_rss_gb)
    print(f"[{time.strftime('%H:%M:%S')}] {profile} S={size} B={batch} ({bl}+{bu}) ...", flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not path.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        print(f"    failed (rc {proc.returncode}): {' | '.join(tail)}", flush=True)
        return {"profile": profile, "size": size, "batch": batch, "status": "failed",
                "returncode": proc.returncode, "reason": " | ".join(tail)}
    result = json.loads(path.read_text())
    result["profile"] = profile  # the CLI says "project" for every project variant
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"    {result['step_seconds']:.2f} s/step, peak {result.get('peak_gpu_gb', result['peak_rss_gb']):.2f} GB"
          f" ({time.time() - t0:.0f} s wall)", flush=True)
    return result


def plot(points: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [p for p in points if "step_seconds" in p]
    if not ok:
        print("nothing to plot")
        return
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"project": "-", "project_ckpt": ":", "project_fp32": "-.", "project_plain": (0, (1, 1)),
              "released": "--"}
    colours = {224: "tab:blue", 288: "tab:orange", 352: "tab:red"}
    for profile in sorted({p["profile"] for p in ok}):
        for size in sorted({p["size"] for p in ok}):
            pts = sorted((p for p in ok if p["profile"] == profile and p["size"] == size),
                         key=lambda p: p["batch"])
            if not pts:
                continue
            b = [p["batch"] for p in pts]
            kw = dict(ls=styles.get(profile, "-"), marker="o", color=colours.get(size),
                      label=f"{profile} S={size}")
            ax_t.plot(b, [p["step_seconds"] for p in pts], **kw)
            ax_m.plot(b, [p.get("peak_gpu_gb", p["peak_rss_gb"]) for p in pts], **kw)
    dev = ok[0].get("gpu_name") or ok[0].get("cpu_name", "")
    ax_t.set(xlabel="batch (labeled + unlabeled)", ylabel="seconds per training step (median)",
             title="Step time")
    ax_m.set(xlabel="batch (labeled + unlabeled)",
             ylabel="peak GPU memory (GiB)" if "peak_gpu_gb" in ok[0] else "peak RSS (GiB)",
             title="Peak memory")
    for ax in (ax_t, ax_m):
        ax.grid(alpha=0.3)
        ax.set_xticks(sorted({p["batch"] for p in ok}))
    ax_m.legend(fontsize=7, ncol=2)
    fig.suptitle(f"DEC-Seg paper model ({ok[0].get('encoder')}), {dev}, torch {ok[0].get('torch')}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 288, 352])
    p.add_argument("--batches", type=int, nargs="+", default=[2, 4, 6])
    p.add_argument("--profiles", nargs="+", default=["project"], choices=sorted(PROFILES))
    p.add_argument("--encoder", default="res2net50d")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    add_set_arg(p, help="extra config overrides for every point")
    p.add_argument("--max-rss-gb", type=float, default=20.0,
                   help="stop a point whose RSS passes this (protects a shared machine; 0 = no limit)")
    p.add_argument("--force", action="store_true", help="re-measure points that have a JSON already")
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    points = []
    for profile in args.profiles:
        for size in args.sizes:
            for batch in args.batches:
                if args.plot_only:
                    f = args.out / f"{profile}_S{size}_B{batch}.json"
                    if f.exists():
                        points.append(json.loads(f.read_text()))
                    continue
                points.append(run_point(profile, size, batch, args, args.out))
    if args.plot_only:  # every JSON in the folder, whatever grid made it
        points = [json.loads(f.read_text()) for f in sorted(args.out.glob("*_S*_B*.json"))]
    (args.out / "sweep.json").write_text(json.dumps(points, indent=1) + "\n")
    plot(points, args.out / "scaling.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
