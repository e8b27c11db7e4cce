"""``decseg prepare TASK --src SRC --out DATA``: the dataset layout from a public download."""
from __future__ import annotations

import argparse
import os
import sys

TASKS = ("polyp", "isic2018", "lgg", "folder", "volumes", "nnunet", "acdc")
VOLUME_TASKS = ("volumes", "nnunet", "acdc")  # 3D sources sliced along --axis (docs/DATA.md)
INTENSITY_CHOICES = ("auto", "percentile", "window", "dataset", "minmax")


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
    p.add_argument("--axis", type=int, default=-1,
                   help="volumes/nnunet/acdc: the array axis to slice (default -1, the last: through-plane)")
    p.add_argument("--empty-slices", type=float, default=1.0, metavar="FRACTION",
                   help="volumes/nnunet/acdc: share of the training slices without foreground to keep "
                        "(seeded; 0 = foreground slices only; default 1 = all); val and test keep all")
    p.add_argument("--labeled-cases", type=int, default=None,
                   help="acdc: labeled training patients, the first N of the protocol (1, 3 or 7; default 7)")
    p.add_argument("--classes", type=int, default=None,
                   help="number of classes K with background (default 2: binary 0/255 masks); for K > 2 "
                        "the masks hold class indices 0..K-1, or values mapped by --label-map")
    p.add_argument("--label-map", default=None, metavar="VALUE:CLASS,...",
                   help="stored mask value -> class, e.g. 0:0,85:1,170:2,255:3 for masks that code the "
                        "classes as grey levels (written to dataset.yaml)")
    p.add_argument("--class-names", default=None, metavar="NAME,...",
                   help="comma-separated names of the K classes, background first (e.g. bg,rv,myo,lv)")
    p.add_argument("--intensity", choices=INTENSITY_CHOICES, default=None,
                   help="how 16-bit, signed and float images become 8-bit (uint8 images stay pixels/255): "
                        "auto (default: per-image 0.5-99.5 percentile window), percentile, window (needs "
                        "--window), dataset (one 0.5-99.5 percentile window over the train images), minmax")
    p.add_argument("--window", default=None, metavar="LOW,HIGH",
                   help="fixed intensity window, e.g. CT soft tissue --window=-160,240, lung "
                        "--window=-1000,400 (write it with '=' when LOW is negative); implies --intensity window")


def intensity_option(mode: str | None, window: str | None) -> str:
    """--intensity / --window as one data.intensity form (or "dataset"); a ConfigError says what fits."""
    from decseg.data.intensity import intensity_rule
    from decseg.errors import ConfigError

    if window is not None:
        if mode not in (None, "window"):
            raise ConfigError(f"--window {window} sets a fixed window; it cannot go with --intensity {mode} "
                              f"(drop one of them)")
        try:
            return intensity_rule(f"window:{window}").spec
        except ConfigError:
            raise ConfigError(f"--window {window!r}: give two numbers LOW,HIGH with LOW < HIGH, e.g. "
                              f"--window=-160,240") from None
    if mode == "window":
        raise ConfigError("--intensity window needs --window LOW,HIGH (e.g. --window=-160,240)")
    return mode or "auto"


def run(args: argparse.Namespace) -> int:
    from decseg.data.prepare import prepare_dataset
    from decseg.errors import DataError
    from decseg.files import check_output
    from decseg.labels import parse_label_map

    if args.only_lesion and args.task != "lgg":
        raise DataError("--only-lesion applies to the lgg task only")
    check_output(args.out, "--out")
    intensity = intensity_option(args.intensity, args.window)
    label_map = parse_label_map(args.label_map) if args.label_map else None
    class_names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    if args.task in VOLUME_TASKS:
        return _run_volumes(args, intensity, label_map, class_names)
    volume_only = [o for o, v in (("--axis", args.axis != -1), ("--empty-slices", args.empty_slices != 1.0),
                                  ("--labeled-cases", args.labeled_cases is not None)) if v]
    if volume_only:
        raise DataError(f"{', '.join(volume_only)} applies to the volume tasks ({', '.join(VOLUME_TASKS)}), "
                        f"not {args.task}")
    report = prepare_dataset(args.task, args.src, args.out, labeled=args.labeled, val=args.val,
                             test=args.test, seed=args.seed, skip_bad=args.skip_bad,
                             only_lesion=args.only_lesion, protocol=args.protocol,
                             workers=args.workers, overwrite=args.overwrite, intensity=intensity,
                             classes=args.classes or 2, label_map=label_map, class_names=class_names)
    c = report["counts"]
    tests = ", ".join(f"{k} {v}" for k, v in c["test"].items()) or "none"
    print(f"wrote {args.out}: train pool {c['train_pool']} ({c['labeled']} labeled, {c['unlabeled']} "
          f"unlabeled, {c['val']} val), test: {tests}")
    if c["bad"]:
        print(f"left out {c['bad']} bad file(s); see {os.path.join(args.out, 'prepare_report.json')}")
    for w in report.get("contrast_warnings", [])[:20]:
        print(f"warning: {w['warning']}", file=sys.stderr)
    if len(report.get("contrast_warnings", [])) > 20:
        print(f"warning: ... and {len(report['contrast_warnings']) - 20} more low-contrast image(s)",
              file=sys.stderr)
    if report.get("contrast_warnings"):
        print(f"{len(report['contrast_warnings'])} image(s) lost their contrast (contrast_warnings in "
              f"{os.path.join(args.out, 'prepare_report.json')})", file=sys.stderr)
    if report["converted"]:
        print(f"re-encoded {len(report['converted'])} image(s) as PNG (listed in prepare_report.json)")
    return 0


def _run_volumes(args: argparse.Namespace, intensity: str, label_map: dict[int, int] | None,
                 class_names: list[str] | None) -> int:
    """prepare volumes / nnunet / acdc: splits by volume (patient), slices along --axis."""
    from decseg.data.prepare import prepare_volume_dataset
    from decseg.errors import DataError

    if args.protocol != "standard":
        raise DataError(f"--protocol applies to the 2D tasks only, not {args.task}")
    if args.labeled_cases is not None and args.task != "acdc":
        raise DataError(f"--labeled-cases applies to acdc; {args.task} takes --labeled (volumes or a fraction)")
    if args.task == "acdc":
        given = [o for o, v in (("--labeled", args.labeled != "0.1"), ("--val", args.val is not None),
                                ("--test", args.test is not None)) if v]
        if given:
            raise DataError(f"acdc uses the protocol's fixed patient split; drop {', '.join(given)} "
                            f"(choose the labeled patients with --labeled-cases 1, 3 or 7)")
    report = prepare_volume_dataset(
        args.task, args.src, args.out, labeled=args.labeled, val=args.val, test=args.test, seed=args.seed,
        axis=args.axis, intensity=intensity, classes=args.classes, label_map=label_map,
        class_names=class_names, empty_slices=args.empty_slices, labeled_cases=args.labeled_cases or 7,
        skip_bad=args.skip_bad, overwrite=args.overwrite)
    c = report["counts"]
    vols, slices = c["volumes"], c["slices"]
    tests = ", ".join(f"{k[5:]} {slices[k]} slices of {vols[k]} volumes" for k in vols if k.startswith("test/"))
    print(f"wrote {args.out}: train {slices['train']} slices of {vols['train']} volumes ({c['labeled']} "
          f"labeled slices of {c['labeled_cases']} cases, {c['unlabeled']} unlabeled), val {slices['val']} "
          f"slices of {vols['val']} volumes, test: {tests or 'none'}")
    if c["empty_slices_dropped"]:
        print(f"left out {c['empty_slices_dropped']} training slice(s) without foreground (--empty-slices)")
    if c["bad"]:
        print(f"left out {c['bad']} bad volume(s); see {os.path.join(args.out, 'prepare_report.json')}")
    return 0
