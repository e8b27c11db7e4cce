"""ACDC (cardiac cine MRI, MICCAI 2017) under the semi-supervised protocol of SSL4MIS (docs/DATA.md).

Reads ``patientXXX/patientXXX_frameYY.nii.gz`` and ``..._gt.nii.gz`` for the ED and ES frames
that ``patientXXX/Info.cfg`` names, below ``SRC``, ``SRC/training`` or ``SRC/database/training``.
Splits are the community's fixed patient lists (``acdc_split.json`` beside this module: 70
train, 10 val, 20 test patients); the labeled cases are the first N training patients in that
order (``--labeled-cases``; 1, 3 and 7 are the published settings: 32, 68 and 136 slices).
Four classes (background, RV, Myo, LV), one grey channel, slices at native size, one
0.5-99.5 percentile window per volume.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from decseg.data.prepare.volumes import Case, VolumeSource, build_volumes, options_from
from decseg.errors import DataError

SPLIT_FILE = Path(__file__).with_name("acdc_split.json")
CLASS_NAMES = ["background", "RV", "Myo", "LV"]
TEST_SET = "acdc"
_PATIENT = re.compile(r"patient\d{3}")


def protocol() -> dict[str, Any]:
    """The committed split: train / val / test patient lists and the slices per training patient."""
    return json.loads(SPLIT_FILE.read_text(encoding="utf-8"))


def _patients_root(src: Path) -> Path:
    for d in (src, src / "training", src / "database" / "training"):
        if d.is_dir() and any(_PATIENT.fullmatch(p.name) and p.is_dir() for p in d.iterdir()):
            return d
    raise DataError(f"{src}: no ACDC patient folders (patientXXX/) found here, in training/ or in "
                    f"database/training/; point --src at the extracted ACDC 'database' folder")


def read_info(path: Path) -> dict[str, str]:
    """Info.cfg as key -> value (``ED: 1``, ``ES: 12``, ``Group: DCM``, ...)."""
    if not path.is_file():
        raise DataError(f"{path}: missing; each ACDC patient folder holds Info.cfg naming the ED and ES frames")
    info = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def _frame(info: dict[str, str], key: str, path: Path) -> int:
    try:
        return int(float(info[key]))
    except (KeyError, ValueError):
        raise DataError(f"{path}: no valid '{key}: N' line (the {key} frame number); fix the file") from None


def patient_cases(folder: Path) -> list[Case]:
    """The ED and ES volumes of one patient folder, each with its _gt label."""
    info_path = folder / "Info.cfg"
    info = read_info(info_path)
    cases = []
    for phase in ("ED", "ES"):
        frame = _frame(info, phase, info_path)
        vid = f"{folder.name}_frame{frame:02d}"
        image, label = folder / f"{vid}.nii.gz", folder / f"{vid}_gt.nii.gz"
        for p in (image, label):
            if not p.is_file():
                raise DataError(f"{p}: missing; {info_path} names frame {frame} as {phase}, so its image and "
                                f"_gt label must be there")
        cases.append(Case(vid, [image], label, folder.name, {"phase": phase, "patient": folder.name,
                                                              **({"group_name": info["Group"]} if "Group" in info else {})}))
    if cases[0].id == cases[1].id:
        raise DataError(f"{info_path}: ED and ES name the same frame; fix the file")
    return cases


def scan(src: Path, labeled_cases: int) -> VolumeSource:
    split = protocol()
    n_train = len(split["train"])
    if not 1 <= labeled_cases <= n_train:
        raise DataError(f"--labeled-cases {labeled_cases}: give 1..{n_train} (the protocol uses 1, 3 or 7)")
    root = _patients_root(src)
    wanted = set(split["train"]) | set(split["val"]) | set(split["test"])
    pool: list[Case] = []
    ignored: list[str] = []
    present = set()
    for d in sorted(p for p in root.iterdir() if p.is_dir() and _PATIENT.fullmatch(p.name)):
        if d.name not in wanted:
            ignored.append(f"{d} (not in the protocol's patient lists)")
            continue
        pool += patient_cases(d)
        present.add(d.name)
    missing = sorted(wanted - present)
    if missing:
        print(f"warning: {root}: {len(missing)} of the protocol's {len(wanted)} patients are missing "
              f"(e.g. {', '.join(missing[:5])}); results are not comparable with published ones",
              file=sys.stderr)
    return VolumeSource(
        name="acdc", pool=pool, description=f"ACDC {root} (SSL4MIS patient split, ED + ES frames)",
        ignored=ignored, channel_names=["MRI"], classes=4, class_names=list(CLASS_NAMES), size=256,
        fixed={"train": split["train"], "val": split["val"], f"test/{TEST_SET}": split["test"]},
        labeled_groups=labeled_cases, auto_rules=lambda ch: "percentile",
        label_fix="ACDC labels are 0 background, 1 RV, 2 Myo, 3 LV; is this an ACDC _gt file?")


def prepare_acdc(src: str | Path, out: str | Path, labeled_cases: int = 7, **options: Any) -> dict[str, Any]:
    """``decseg prepare acdc``: the layout of the ACDC protocol; the report adds the expected labeled
    slice count of the protocol (SSL4MIS's slicing) beside the one written."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"--src {src}: folder not found")
    source = scan(src, labeled_cases)
    report = build_volumes(source, src, out, options_from(options))
    split = protocol()
    expected = sum(split["train_slices"][p] for p in split["train"][:labeled_cases])
    report["protocol_labeled_slices"] = expected
    if report["counts"]["labeled"] != expected:
        print(f"note: {report['counts']['labeled']} labeled slices written; the protocol's {labeled_cases} "
              f"case(s) have {expected} in the official data", file=sys.stderr)
    return report


__all__ = ["prepare_acdc", "scan", "protocol", "CLASS_NAMES", "SPLIT_FILE"]
