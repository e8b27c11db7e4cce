"""Where the time of one training step goes: torch.profiler's operator table for the project step.

    python benchmarks/profile_step.py --set model.pretrained=false --size 224 \
        --batch-labeled 2 --batch-unlabeled 2 [--set train.amp=off] [--shapes] [--rows 30]

Runs one warm-up step, then profiles one step and prints the operators sorted by their own
CPU time (or CUDA time on a GPU), with input shapes grouped, so single heavy convolutions show.
"""
from __future__ import annotations

import argparse

import torch

from decseg.config import load_config
from decseg.accel.device import resolve_device
from decseg.cli.benchmarking import build_train_step
from decseg.cli.main import add_set_arg
from levers import LEVERS, lever_adjustment  # benchmarks/levers.py, beside this script


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="polyp")
    add_set_arg(p)
    p.add_argument("--size", type=int)
    p.add_argument("--batch-labeled", type=int)
    p.add_argument("--batch-unlabeled", type=int)
    p.add_argument("--lever", action="append", default=[], choices=sorted(LEVERS))
    p.add_argument("--rows", type=int, default=30)
    p.add_argument("--shapes", action="store_true", help="group by input shapes too")
    a = p.parse_args()
    overrides = list(a.overrides)
    if a.size:
        overrides.append(f"data.size={a.size}")
    if a.batch_labeled:
        overrides.append(f"train.batch_labeled={a.batch_labeled}")
    if a.batch_unlabeled:
        overrides.append(f"train.batch_unlabeled={a.batch_unlabeled}")
    cfg = load_config(a.config, overrides)
    device = resolve_device(cfg.train.device)
    ts = build_train_step(cfg, device, adjust=lever_adjustment(a.lever, cfg) if a.lever else None)
    ts.step()  # warm-up: optimizer state, weight casts, oneDNN primitive caches
    acts = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts, record_shapes=a.shapes) as prof:
        ts.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages(group_by_input_shape=a.shapes).table(sort_by=key, row_limit=a.rows,
                                                                 max_name_column_width=60))


if __name__ == "__main__":
    main()
