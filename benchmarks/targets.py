"""Print the performance targets as a markdown table from the benchmark JSON files.

    python benchmarks/targets.py benchmarks/results/cpu_2thread

Reads the files written by the commands in docs/PERFORMANCE.md (``released_S224_B4.json``,
``project_S224_B4.json``, ``project_plain_S224_B4.json``, ``project_fp32_S224_B4.json``, the
predict files and, if present, ``project_S352_B6.json``)
and compares them with the targets and with the released code's own figures on this machine type
(docs/PERFORMANCE.md, "What is measured").
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

# The released code measured on the 2-core machine type, fp32: s per step, GB (10^9 bytes), s per forward
RELEASED = {"step_224_4": 22.0, "rss_224_4": 9.9, "step_352_6": 75.0, "rss_352_6": 19.3, "forward_352": 2.4}
MACHINE_GB = 23.4  # MemTotal of the 2-core machine this was measured on, GiB


def load(folder: Path, *names: str) -> dict | None:
    for name in names:
        for f in (folder / name,):
            if f.is_file():
                return json.loads(f.read_text())
    return None


def main(folder: str) -> int:
    d = Path(folder)
    rel = load(d, "released_S224_B4.json")
    proj = load(d, "project_S224_B4.json")
    fp32 = load(d, "project_fp32_S224_B4.json")
    plain = load(d, "project_plain_S224_B4.json")
    big = load(d, "project_S352_B6.json")
    rp = load(d, "released_predict_S352_B1.json")
    pp = load(d, "project_predict_fp32_S352_B8.json")
    pb = load(d, "project_predict_bf16_S352_B8.json")
    rows = []

    def ratio(a, b):
        return a / b if a is not None and b else float("nan")

    if rel and proj:
        r = ratio(proj["step_seconds"], rel["step_seconds"])
        rows.append(("default step <= 0.5x released fp32 (224, 4)",
                     f"{proj['step_seconds']:.1f} s vs {rel['step_seconds']:.1f} s = {r:.2f}x"
                     + (f" (vs the released code's 22 s: {proj['step_seconds'] / RELEASED['step_224_4']:.2f}x)"
                        if proj.get("cpu_threads", 2) >= 2 else ""), r <= 0.5))
    if rel and fp32:
        r = ratio(fp32["step_seconds"], rel["step_seconds"])
        rows.append(("strict fp32 step (train.amp=off) <= 0.85x released",
                     f"{fp32['step_seconds']:.1f} s = {r:.2f}x", r <= 0.85))
    if rel and proj:
        r = ratio(proj["peak_rss_gb"], rel["peak_rss_gb"])
        rows.append(("peak memory <= 0.6x released (224, 4)",
                     f"{proj['peak_rss_gb']:.2f} vs {rel['peak_rss_gb']:.2f} GiB = {r:.2f}x "
                     # the released code's figures are GB (10^9 bytes), ours GiB
                     f"(vs the released code's 9.9 GB = {RELEASED['rss_224_4'] * 1e9 / 2**30:.2f} GiB: "
                     f"{proj['peak_rss_gb'] * 2**30 / (RELEASED['rss_224_4'] * 1e9):.2f}x)", r <= 0.6))
    if rel and plain:
        r = ratio(plain["peak_rss_gb"], rel["peak_rss_gb"])
        rows.append(("  without optimizer_in_backward, cpu_memory=system",
                     f"{plain['step_seconds']:.1f} s, {plain['peak_rss_gb']:.2f} GiB = {r:.2f}x", r <= 0.6))
    if big:
        rows.append(("352, batch 6 fits in the machine with margin",
                     f"{big['peak_rss_gb']:.2f} GiB of {MACHINE_GB} GiB", big["peak_rss_gb"] < 0.8 * MACHINE_GB))
    for name, p in (("fp32: the predict default", pp), ("bf16", pb)):
        if p:
            base = 1 / rp["step_seconds"] if rp else 1 / RELEASED["forward_352"]
            r = p["images_per_second"] / base
            rows.append((f"inference at 352 >= 3x released forward ({name})",
                         f"{p['images_per_second']:.2f} img/s vs {base:.2f} = {r:.1f}x"
                         + (f" (vs the released code's 1/2.4 s: {p['images_per_second'] * RELEASED['forward_352']:.1f}x)"
                            if p.get("cpu_threads", 2) >= 2 else ""), r >= 3))
    if pb and "pixel_agreement_vs_fp32" in pb:
        a = pb["pixel_agreement_vs_fp32"]
        rows.append(("bf16 maps vs fp32 pixel agreement >= 99.5%", f"{100 * a:.3f}%", a >= 0.995))
    print("| target | measured | met |\n|---|---|---|")
    for name, value, ok in rows:
        print(f"| {name} | {value} | {'yes' if ok else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/cpu_2thread"))
