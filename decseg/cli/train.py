"""``decseg train --data DATA --out RUN [--config FILE] [--set K=V ...] [--resume]``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from decseg.cli.main import add_config_args


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset folder (from decseg prepare / decseg synth)")
    p.add_argument("--out", required=True, help="run folder: config.yaml, log.jsonl, checkpoints/, tensorboard/")
    add_config_args(p)
    p.add_argument("--resume", action="store_true",
                   help="continue RUN from checkpoints/last.pt with RUN/config.yaml (--set may raise "
                        "train.iterations; architecture keys cannot change)")
    p.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="stop once N iterations are done (saving last.pt, as on SIGTERM); resume later")


def resolve_config(args: argparse.Namespace):
    """The config for this run: the stored one on --resume, else defaults + --config + --set."""
    from decseg import load_config
    from decseg.inference.checkpoint import architecture_differences
    from decseg.errors import ConfigError

    run_dir = Path(args.out)
    stored = run_dir / "config.yaml"
    if args.resume and stored.is_file():
        before = load_config(stored)
        cfg = load_config(stored, args.overrides)
        diffs = architecture_differences(before, cfg)
        if diffs:
            raise ConfigError(f"--resume: --set changes the architecture of the run in {run_dir} ("
                              + "; ".join(diffs) + "); drop those overrides or start a new --out")
        if args.config:
            print(f"note: --resume uses {stored}; --config {args.config} is ignored", file=sys.stderr)
        return cfg
    if not args.resume and (run_dir / "checkpoints" / "last.pt").exists():
        raise ConfigError(f"{run_dir} already holds a training run (checkpoints/last.pt); add --resume "
                          f"to continue it, or choose another --out")
    return load_config(args.config, args.overrides)


def run(args: argparse.Namespace) -> int:
    from decseg.files import check_output
    from decseg.train.trainer import Trainer

    check_output(args.out, "--out")
    cfg = resolve_config(args)
    trainer = Trainer(cfg, args.data, args.out, resume=args.resume, stop_after=args.stop_after)
    return trainer.run()
