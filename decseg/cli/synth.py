"""``decseg synth OUT``: a deterministic synthetic lesion dataset in the standard layout."""
from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output dataset folder (must not exist or be empty)")
    p.add_argument("--n", type=int, default=200, help="training-pool images (default 200)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--seed", type=int, default=1337, help="random seed (default 1337)")
    p.add_argument("--labeled", default="0.1",
                   help="labeled part of the pool: a fraction (0.1) or a count (20); default 0.1")
    p.add_argument("--n-val", type=int, default=20, help="validation images (default 20)")
    p.add_argument("--n-test", type=int, default=40, help="images of test/synth-test (default 40)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace) -> int:
    from decseg.data.splits import parse_amount
    from decseg.data.synthetic import generate_dataset
    from decseg.data.layout import DatasetLayout

    out = generate_dataset(args.out, n=args.n, size=args.size, seed=args.seed,
                           labeled=parse_amount(args.labeled), n_val=args.n_val,
                           n_test=args.n_test, overwrite=args.overwrite)
    layout = DatasetLayout(out)
    print(f"wrote {out}: {len(layout.labeled_ids)} labeled + {len(layout.unlabeled_ids)} unlabeled "
          f"training images, {args.n_val} val, test sets: {', '.join(layout.test_sets()) or 'none'}")
    return 0
