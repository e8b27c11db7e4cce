"""``decseg evaluate``: toolbox-exact metrics of prediction maps against GT masks; per-class and
per-volume metrics for multi-class and volume sets (docs/EVALUATION.md)."""
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
    p.add_argument("--classes", type=int, default=None, metavar="K",
                   help="number of classes, background included (default: `classes` of the dataset.yaml in "
                        "the three folders above --gt, else 2); K > 2: masks and predictions hold class indices")
    p.add_argument("--label-map", default=None, metavar="RAW:CLASS,...",
                   help="K > 2: GT masks that code the classes as other values, e.g. 0:0,85:1,170:2,255:3 "
                        "(predictions always hold class indices)")
    p.add_argument("--volumes", choices=("auto", "on", "off"), default="auto",
                   help="per-volume 3D metrics from the set's volumes.json: auto (when it exists, the default), "
                        "on (required), off (per image only)")
    p.add_argument("--distance-unit", choices=("mm", "voxel"), default="mm",
                   help="volume mode: HD95 and ASD in mm with the volumes' spacing (default), or in voxels "
                        "without spacing (the SSL4MIS/UniMatch ACDC protocol); 2D sets are always in pixels")
    p.add_argument("--hd95", choices=("monai", "medpy"), default="monai",
                   help="the HD95 the table shows: monai (max of the two directed 95th percentiles, default) or "
                        "medpy (95th percentile of both directions pooled, as ACDC papers); the JSON has both")


def run(args: argparse.Namespace) -> int:
    import sys
    import warnings

    from decseg.errors import DataError
    from decseg.labels import class_names, parse_label_map
    from decseg.metrics import find_sets
    from decseg.metrics.evaluate import EvaluationWarning, dataset_classes, evaluate_set
    from decseg.metrics.report import format_results, write_csv, write_json, write_markdown

    if args.workers is not None and args.workers < 1:
        raise DataError(f"--workers must be at least 1, got {args.workers}")
    if args.classes is not None and not 2 <= args.classes <= 256:
        raise DataError(f"--classes must be between 2 and 256 (8-bit class maps), got {args.classes}")
    label_map = parse_label_map(args.label_map) if args.label_map is not None else None
    classes, names, _ = dataset_classes(args.gt)
    if args.classes is not None and args.classes != classes:
        classes, names = args.classes, class_names(args.classes)
    if label_map is not None and classes == 2:
        raise DataError("--label-map is for datasets of more than 2 classes; give --classes K as well "
                        "(binary masks use the toolbox's rule, foreground > 128)")
    results = {}
    for name, (pred_dir, gt_dir) in find_sets(args.pred, args.gt).items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EvaluationWarning)
            results[name] = evaluate_set(pred_dir, gt_dir, classes, names, volumes=args.volumes,
                                         distance_unit=args.distance_unit, workers=args.workers,
                                         label_map=label_map)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    print(format_results(results, hd95=args.hd95))
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
