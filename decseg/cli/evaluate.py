"""``decseg evaluate``: toolbox-exact metrics of prediction maps against GT masks."""
from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, help="folder of prediction PNGs (ID.png), or of set folders PRED/SET/")
    p.add_argument("--gt", required=True,
                   help="folder of GT masks (one set), or a folder of sets with masks/ inside (e.g. DATA/test)")
    p.add_argument("--json", default=None, metavar="FILE", help="write {set: {metric: value}} as JSON")
    p.add_argument("--csv", default=None, metavar="FILE", help="write the table as CSV")
    p.add_argument("--md", default=None, metavar="FILE", help="write the table as Markdown")
    p.add_argument("--workers", type=int, default=None,
                   help="processes reading and scoring images (default: min(4, CPUs)); results do not depend on it")


def run(args: argparse.Namespace) -> int:
    import sys
    import warnings

    from decseg.errors import DataError
    from decseg.metrics import evaluate_folder, find_sets
    from decseg.metrics.evaluate import EvaluationWarning
    from decseg.metrics.report import format_table, write_csv, write_json, write_markdown

    if args.workers is not None and args.workers < 1:
        raise DataError(f"--workers must be at least 1, got {args.workers}")
    results = {}
    for name, (pred_dir, gt_dir) in find_sets(args.pred, args.gt).items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EvaluationWarning)
            results[name] = evaluate_folder(pred_dir, gt_dir, workers=args.workers)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    print(format_table(results))
    for option, path, write in (("--json", args.json, write_json), ("--csv", args.csv, write_csv),
                                ("--md", args.md, write_markdown)):
        if not path:
            continue
        try:
            write(path, results)
        except OSError as e:  # a folder in the way, no permission, full disk: the table is printed above
            raise DataError(f"{option} {path}: cannot write it ({e.strerror or e}); "
                            f"choose a writable file path") from None
    return 0
