"""``decseg demo``: synthetic data -> train DEC-Seg and a supervised baseline -> predict -> evaluate -> report."""
from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="decseg-demo", help="output folder (default ./decseg-demo)")
    p.add_argument("--quick", action="store_true",
                   help="tiny run (a few iterations, seconds): checks the pipeline, numbers mean nothing")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    p.add_argument("--iterations", type=int, default=None, help="training iterations per method (default 300; quick 2)")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from decseg.cli.demo_run import FULL, QUICK, run_demo
    from decseg.errors import ConfigError

    settings = QUICK if args.quick else FULL
    if args.iterations is not None:
        if args.iterations < 1:
            raise ConfigError(f"--iterations {args.iterations} must be >= 1")
        settings = replace(settings, iterations=args.iterations,
                           val_every=min(settings.val_every, args.iterations))
    result = run_demo(args.out, quick=args.quick, overwrite=args.overwrite, settings=settings)
    print(f"\ndemo finished in {result['seconds']['total']:.0f} s; report: {result['report']}")
    for method, sets in result["results"].items():
        for set_name, m in sets.items():
            print(f"  {method:10s} {set_name}: meanDic {m['meanDic']:.4f}  meanIoU {m['meanIoU']:.4f}  "
                  f"dice@0.5 {m.get('dice@0.5', float('nan')):.4f}")
    return 0
