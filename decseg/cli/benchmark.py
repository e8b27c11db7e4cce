"""``decseg benchmark {train,predict}``: step time / throughput and peak memory.

Each call measures one configuration in this process; run one configuration per process
(as ``benchmarks/sweep.py`` does) so the CPU peak RSS is not polluted by earlier work.
"""
from __future__ import annotations

import argparse
import json
import sys

from decseg.cli.main import add_config_args


def add_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="what", metavar="{train,predict}", required=True)

    t = sub.add_parser("train", help="median seconds per training step and peak memory",
                       description="Real training steps (both scales, perturbed pass, generators, "
                                   "backward, SGD step) of the configured model and method on "
                                   "synthetic tensors of the configured size and batch.")
    add_config_args(t)
    _common(t)
    t.add_argument("--batch-labeled", type=int, default=None,
                   help="labeled samples per step (same as --set train.batch_labeled=N)")
    t.add_argument("--batch-unlabeled", type=int, default=None,
                   help="unlabeled samples per step (same as --set train.batch_unlabeled=N)")

    q = sub.add_parser("predict", help="inference images per second",
                       description="Images per second of the prediction path (torch.inference_mode, "
                                   "channels_last, bf16 when predict.amp=bf16) at a batch size.")
    add_config_args(q)
    _common(q)
    q.add_argument("--batch-size", type=int, default=None, help="images per batch (default predict.batch_size)")
    q.add_argument("--amp", choices=("off", "bf16"), default=None, help="override predict.amp")
    q.add_argument("--no-channels-last", action="store_true", help="keep NCHW tensors")
    q.add_argument("--agreement", action="store_true",
                   help="also report the fraction of pixels whose argmax equals a strict-fp32 NCHW run")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=3, help="timed steps after warm-up (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps (default 1)")
    p.add_argument("--size", type=int, default=None, help="input size S (same as --set data.size=S)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (same as --set train.device=...)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the result as JSON")


def run(args: argparse.Namespace) -> int:
    from decseg.config import load_config
    from decseg.cli import benchmarking as bench
    from decseg.io import atomic_write_text

    overrides = list(args.overrides)
    if args.size is not None:
        overrides.append(f"data.size={args.size}")
    if args.device is not None:
        overrides.append(f"train.device={args.device}")
    if args.what == "predict":
        if args.batch_size is not None:
            overrides.append(f"predict.batch_size={args.batch_size}")
        if args.amp is not None:
            overrides.append(f"predict.amp={args.amp}")
    if args.what == "train":
        if args.batch_labeled is not None:
            overrides.append(f"train.batch_labeled={args.batch_labeled}")
        if args.batch_unlabeled is not None:
            overrides.append(f"train.batch_unlabeled={args.batch_unlabeled}")
    cfg = load_config(args.config, overrides)

    if args.what == "train":
        result = bench.benchmark_train(cfg, steps=args.steps, warmup=args.warmup)
        line = (f"train step: {result['step_seconds']:.3f} s median of {args.steps} "
                f"(S={result['size']}, batch {result['batch_labeled']}+{result['batch_unlabeled']}, "
                f"amp={result['amp']}, channels_last={result['channels_last_resolved']}, "
                f"optimizer_in_backward={result['optimizer_in_backward_resolved']}, "
                f"gemm weight-grad convs={result['gemm_weight_grad_convs']}, {result['device']})")
    else:
        result = bench.benchmark_predict(cfg, steps=args.steps, warmup=args.warmup,
                                         channels_last=not args.no_channels_last, agreement=args.agreement)
        line = (f"predict: {result['images_per_second']:.2f} images/s at batch {result['batch_size']} "
                f"(S={result['size']}, amp={result['amp']}, {result['device']})")
        if "pixel_agreement_vs_fp32" in result:
            line += f"; pixel agreement vs fp32 {100 * result['pixel_agreement_vs_fp32']:.3f}%"
    mem = (f"peak GPU memory {result['peak_gpu_gb']:.2f} GB" if "peak_gpu_gb" in result
           else f"peak RSS {result['peak_rss_gb']:.2f} GB" + ("" if result["peak_rss_exact"] else " (sampled)"))
    print(f"{line}; {mem}", file=sys.stdout)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0
