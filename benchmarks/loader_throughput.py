"""Loader throughput, and what the strong augmentations of the baselines add to it.

The training loader (``decseg.data.TwoStreamLoader``: decode, resize to S and S/2, colour-jittered
views) feeds labeled + unlabeled batches; FixMatch, UniMatch and BCP then augment the batch
tensors on the training device (``decseg/methods/augment.py``), in the training process. This
script measures, on a synthetic dataset at the configured size:

- ``loader``: batches per second of the loader alone, for each ``--workers`` value;
- ``augment``: seconds per unlabeled batch of the on-device strong augmentations, as each method
  calls them (FixMatch: one ``strong_colour``; UniMatch: two CutMix boxes, four ``strong_colour``
  and two pastes; BCP: one copy-paste box and two pastes);
- ``loader + augment``: batches per second when every batch is also augmented as UniMatch does,
  i.e. the loader with and without the strong augmentations.

    python benchmarks/loader_throughput.py --size 352 --batches 30 --workers 0,2 \
        --json benchmarks/results/loader_throughput.json

One configuration per process is not needed here (no peak memory is reported).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def _loader(data: Path, size: int, batch: int, workers: int, seed: int = 0):
    from decseg import load_config
    from decseg.data import DatasetLayout, TwoStreamLoader

    cfg = load_config(None, [f"data.size={size}", f"data.num_workers={workers}"])
    return TwoStreamLoader(DatasetLayout(data), cfg.data, batch_labeled=batch, batch_unlabeled=batch,
                           seed=seed, num_workers=workers, semi=True)


def _batches_per_second(loader, n: int, warmup: int, augment=None) -> float:
    it = iter(loader)
    for _ in range(warmup):
        lab, unl = next(it)
    t = time.perf_counter()
    for _ in range(n):
        lab, unl = next(it)
        if augment is not None:
            augment(unl["image"])
    return n / (time.perf_counter() - t)


def augmentations() -> dict:
    from decseg.methods.augment import copy_paste_box, cutmix_boxes, paste, strong_colour

    def fixmatch(x):
        return strong_colour(x)

    def unimatch(x):
        n, _, h, w = x.shape
        mix = x.roll(1, 0)
        boxes = [cutmix_boxes(n, h, w, device=x.device) for _ in range(2)]
        return [paste(strong_colour(x), strong_colour(mix), box) for box in boxes]

    def bcp(x):
        h, w = x.shape[-2:]
        box = copy_paste_box(h, w, 2 / 3, device=x.device)
        return paste(x, x.roll(1, 0), box), paste(x.roll(1, 0), x, box)

    return {"fixmatch": fixmatch, "unimatch": unimatch, "bcp": bcp}


def time_augment(fn, x: torch.Tensor, repeats: int) -> float:
    fn(x)  # warm-up
    times = []
    for _ in range(repeats):
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        t = time.perf_counter()
        fn(x)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=352, help="input size S (default 352)")
    ap.add_argument("--batch", type=int, default=3, help="labeled and unlabeled batch size (default 3)")
    ap.add_argument("--batches", type=int, default=30, help="timed batches per measurement (default 30)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed batches first (default 3)")
    ap.add_argument("--workers", default="0,2", help="data.num_workers values, comma-separated (default 0,2)")
    ap.add_argument("--device", default="cpu", help="where the augmentations run (cpu, cuda)")
    ap.add_argument("--images", type=int, default=48, help="synthetic training images (default 48)")
    ap.add_argument("--data", default=None, help="a dataset folder to read instead of synthetic images")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    from decseg.cli.benchmarking import cpu_name
    from decseg.data import generate_dataset

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else generate_dataset(
            Path(tmp) / "data", n=args.images, size=args.size, seed=0, labeled=0.5, n_val=0, n_test=0)
        result = {"size": args.size, "batch": f"{args.batch}+{args.batch}", "batches": args.batches,
                  "device": args.device, "torch_threads": torch.get_num_threads(), "cpu": cpu_name(),
                  "cpu_count": os.cpu_count(), "torch": torch.__version__, "data": "synthetic" if not args.data else str(data),
                  "loader": {}, "loader_with_unimatch_augment": {}, "augment_seconds_per_batch": {}}
        augs = augmentations()
        device = torch.device(args.device)
        on_device = (lambda fn: (lambda x: fn(x.to(device))))
        for w in (int(v) for v in args.workers.split(",")):
            loader = _loader(data, args.size, args.batch, w)
            try:
                result["loader"][str(w)] = _batches_per_second(loader, args.batches, args.warmup)
                result["loader_with_unimatch_augment"][str(w)] = _batches_per_second(
                    loader, args.batches, 0, augment=on_device(augs["unimatch"]))
            finally:
                loader.close()
        x = next(iter(_loader(data, args.size, args.batch, 0)))[1]["image"].to(device)
        for name, fn in augs.items():
            result["augment_seconds_per_batch"][name] = time_augment(fn, x, max(5, args.batches // 3))

    for w, bps in result["loader"].items():
        both = result["loader_with_unimatch_augment"][w]
        print(f"loader, {w} workers: {bps:.2f} batches/s ({bps * 2 * args.batch:.1f} images/s); with "
              f"UniMatch's strong views of each unlabeled batch: {both:.2f} batches/s")
    for name, s in result["augment_seconds_per_batch"].items():
        print(f"{name} strong augmentation: {1000 * s:.1f} ms per unlabeled batch of {args.batch} on {args.device}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
