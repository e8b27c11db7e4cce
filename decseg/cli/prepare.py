"""``decseg prepare TASK --src SRC --out DATA``: the dataset layout from a public download."""
from __future__ import annotations

import argparse
import os

TASKS = ("polyp", "isic2018", "lgg", "folder")


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=TASKS, help="which benchmark the download is")
    p.add_argument("--src", required=True, help="the downloaded/extracted folder")
    p.add_argument("--out", required=True, help="dataset folder to write (must not exist or be empty)")
    p.add_argument("--labeled", default="0.1",
                   help="labeled training images: a fraction of the training pool (0.1) or a count "
                        "(145); default 0.1")
    p.add_argument("--val", default=None,
                   help="validation images carved from the training pool: fraction or count "
                        "(default: polyp/isic2018 0.05, lgg 0.1 of patients, folder 0.1)")
    p.add_argument("--test", default=None,
                   help="test part where the download has no test split (isic2018 0.2, lgg 0.2 of "
                        "patients, raw polyp 0.1 per source, folder 0)")
    p.add_argument("--seed", type=int, default=1337, help="split seed (default 1337)")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out unreadable/unpaired/mismatched files (listed in prepare_report.json) "
                        "instead of stopping")
    p.add_argument("--only-lesion", action="store_true", help="lgg: keep only slices with a lesion")
    p.add_argument("--protocol", choices=("standard", "paper"), default="standard",
                   help="paper: the paper's protocol (lgg: lesion slices only, 25%% of patients for test)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="threads decoding images")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    from decseg.data.prepare import prepare_dataset
    from decseg.errors import DataError
    from decseg.files import check_output

    if args.only_lesion and args.task != "lgg":
        raise DataError("--only-lesion applies to the lgg task only")
    check_output(args.out, "--out")
    report = prepare_dataset(args.task, args.src, args.out, labeled=args.labeled, val=args.val,
                             test=args.test, seed=args.seed, skip_bad=args.skip_bad,
                             only_lesion=args.only_lesion, protocol=args.protocol,
                             workers=args.workers, overwrite=args.overwrite)
    c = report["counts"]
    tests = ", ".join(f"{k} {v}" for k, v in c["test"].items()) or "none"
    print(f"wrote {args.out}: train pool {c['train_pool']} ({c['labeled']} labeled, {c['unlabeled']} "
          f"unlabeled, {c['val']} val), test: {tests}")
    if c["bad"]:
        print(f"left out {c['bad']} bad file(s); see {os.path.join(args.out, 'prepare_report.json')}")
    if report["converted"]:
        print(f"re-encoded {len(report['converted'])} image(s) as PNG (listed in prepare_report.json)")
    return 0
