"""Volumes: 3D image and label volumes (NIfTI, NRRD) sliced into the 2D layout (docs/DATA.md).

Accepted source (``decseg prepare volumes``)::

    SRC/images/ID.nii.gz|.nii|.nrrd|.nhdr     image volumes
    SRC/labels/ID.<any volume extension>      label volumes (class indices), same ID
    SRC/test/SET/{images,labels}/             optional given test sets

This module also holds the builder that ``nnunet`` and ``acdc`` share: a source is a list of
:class:`Case` (one volume, with one image file per channel, its label file, and the split unit:
the patient, or the volume itself), and :func:`build_volumes` splits the units (never single
slices), reads each volume once, maps its intensities to 8 bits with one window per volume
(so the slices of a scan share it), writes every slice along ``axis`` at its native in-plane
size, and records each volume's geometry in ``DATA/<split>/volumes.json``.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from decseg.data.imageio import write_image_png
from decseg.data.intensity import IntensityRule, contrast_warning, dataset_window, describe, intensity_rule
from decseg.data.splits import Amount, labeled_split, parse_amount, take, write_id_list
from decseg.data.volumes import (Volume, check_label_range, check_same_grid, label_values, read_volume,
                                 slice_along, volume_stem, volume_suffix)
from decseg.errors import ConfigError, DataError
from decseg.files import is_ignorable
from decseg.io import atomic_dir
from decseg.labels import check_class_names, write_label_png

PER_CASE_VALUES = 250_000  # foreground values per training case kept for --intensity dataset
MAX_CHANNELS = 3  # the 2D layout stores grey or RGB PNGs; two channels are padded with a zero third


def read_channels(path: Path) -> list[Volume]:
    """The channel volumes of one image file (a volume file holds one channel)."""
    return [read_volume(path)]


@dataclass
class Case:
    """One volume of the source: ID, one image file per channel, label file, split unit."""

    id: str
    images: list[Path]
    label: Path | None
    group: str  # the split unit: patient (ACDC) or the volume ID itself
    info: dict[str, Any] = field(default_factory=dict)  # extra keys for volumes.json (e.g. phase)


@dataclass
class VolumeSource:
    """What a scanner found, and what the source itself says about classes and splits."""

    name: str
    pool: list[Case]  # cases to split into train / val (/ test when none is given)
    tests: dict[str, list[Case]] = field(default_factory=dict)  # given test sets
    description: str = ""
    ignored: list[str] = field(default_factory=list)
    channel_names: list[str] | None = None
    classes: int | None = None  # declared by the source (nnU-Net dataset.json, ACDC)
    class_names: list[str] | None = None
    size: int = 256  # data.size recorded in dataset.yaml (training resizes to it)
    two_d: bool = False  # 2D sources (nnU-Net .png): no volumes.json
    # A fixed protocol: groups in order {"train": [...], "val": [...], "test/SET": [...]}; the
    # labeled ones are then the first N training groups (labeled_groups).
    fixed: dict[str, list[str]] | None = None
    labeled_groups: int | None = None
    auto_rules: Callable[[int], str] | None = None  # channel -> spec that "auto" means for it
    read_image: Callable[[Path], list[Volume]] = field(default=read_channels)
    read_label: Callable[[Path], Volume] = field(default=read_volume)
    n_channels: int | None = None  # channels per case (default: its number of image files)
    label_fix: str | None = None  # what to do about a label value outside 0..K-1


@dataclass
class VolumeOptions:
    labeled: Amount | str = 0.1  # cases (volumes / patients) of the training pool
    val: Amount | str = 0.1
    test: Amount | str = 0.2  # carved from the pool when the source has no test set
    seed: int = 1337
    axis: int = -1
    intensity: str = "auto"
    classes: int | None = None
    label_map: dict[int, int] | None = None
    class_names: list[str] | None = None  # overrides the source's names
    empty_slices: float = 1.0  # share of the training slices without foreground that is kept
    skip_bad: bool = False
    overwrite: bool = False


# -- scanning SRC/images + SRC/labels -------------------------------------------------------
def index_volumes(folder: Path, ignored: list[str]) -> dict[str, Path]:
    """ID -> volume file in ``folder``; other files are noted in ``ignored``; duplicate IDs are an error."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if is_ignorable(p) or p.is_dir():
            continue
        if volume_suffix(p) is None:
            ignored.append(str(p))
            continue
        stem = volume_stem(p)
        if stem in found:
            raise DataError(f"{folder}: two volumes with the ID {stem!r} ({found[stem].name}, {p.name}); "
                            f"keep one of them")
        found[stem] = p
    return found


def _labels_dir(folder: Path) -> Path | None:
    return next((folder / n for n in ("labels", "label", "masks", "Labels") if (folder / n).is_dir()), None)


def pair_volumes(folder: Path, ignored: list[str], required: bool = True) -> list[Case]:
    """Cases from ``folder/images`` and ``folder/labels`` with matching IDs."""
    images, labels = folder / "images", _labels_dir(folder)
    if not images.is_dir() or labels is None:
        raise DataError(f"{folder}: expected {folder}/images and {folder}/labels holding volumes with "
                        f"matching names (ID.nii.gz, ID.nii, ID.nrrd or ID.nhdr); see docs/DATA.md")
    imgs, lbls = index_volumes(images, ignored), index_volumes(labels, ignored)
    if not imgs and required:
        raise DataError(f"{images}: holds no volume files (.nii.gz, .nii, .nrrd, .nhdr)")
    for i in sorted(set(lbls) - set(imgs)):
        raise DataError(f"{lbls[i]}: label volume without an image (no {images}/{i}.*); add the image or "
                        f"remove the label")
    return [Case(i, [p], lbls.get(i), i) for i, p in sorted(imgs.items())]


def scan(src: Path) -> VolumeSource:
    ignored: list[str] = []
    found = VolumeSource("volumes", pair_volumes(src, ignored), description=f"volumes {src}")
    test_root = src / "test"
    if test_root.is_dir():
        for d in sorted(p for p in test_root.iterdir() if p.is_dir() and not is_ignorable(p)):
            found.tests[d.name] = pair_volumes(d, ignored)
    found.ignored = ignored
    return found


# -- splitting by unit ---------------------------------------------------------------------
def _test_count(amount: Amount, total: int, option: str) -> int:
    """How many units a test amount takes: the kept part is floored, as the 2D tasks do."""
    if isinstance(amount, float):
        return total - int(math.floor((1.0 - amount) * total + 1e-6))
    if amount > total:
        raise DataError(f"{option} {amount}: only {total} cases available")
    return amount


def _val_count(amount: Amount, total: int, option: str) -> int:
    if isinstance(amount, float):
        n = int(math.floor(amount * total + 1e-6))
        return 1 if amount > 0 and n == 0 and total >= 2 else n  # a val set when one is asked for
    if amount > total:
        raise DataError(f"{option} {amount}: only {total} cases available")
    return amount


@dataclass
class GroupSplit:
    train: list[str]
    val: list[str]
    tests: dict[str, list[str]]  # carved test sets (given ones keep their cases)
    labeled: list[str]
    note: str


def split_groups(source: VolumeSource, opts: VolumeOptions) -> GroupSplit:
    groups = sorted({c.group for c in source.pool})
    if source.fixed is not None:
        train = [g for g in source.fixed["train"] if g in groups]
        val = [g for g in source.fixed.get("val", []) if g in groups]
        tests = {k[5:]: [g for g in v if g in groups] for k, v in source.fixed.items() if k.startswith("test/")}
        n = source.labeled_groups or 0
        order = source.fixed["train"]
        missing = [g for g in order[:n] if g not in groups]
        if missing:
            raise DataError(f"the first {n} training cases of the protocol must be present to label them; "
                            f"missing: {', '.join(missing)}")
        return GroupSplit(train, val, tests, order[:n], f"the first {n} training cases of the protocol")
    test = parse_amount(opts.test, "--test")
    val = parse_amount(opts.val, "--val")
    labeled = parse_amount(opts.labeled, "--labeled")
    tests: dict[str, list[str]] = {}
    pool = groups
    if not source.tests and test:
        chosen, pool = take(pool, _test_count(test, len(pool), "--test"), opts.seed, "test")
        if chosen:
            tests["test"] = chosen
    if not pool:
        raise DataError("no training cases are left after the test split; lower --test")
    chosen_val, train = take(pool, _val_count(val, len(pool), "--val"), opts.seed, "val") if val else ([], pool)
    if not train:
        raise DataError("no training cases are left after the validation split; lower --val")
    lab, _, note = labeled_split(train, labeled, opts.seed, base=len(pool))
    return GroupSplit(train, chosen_val, tests, lab, note + " cases")


# -- reading one case ----------------------------------------------------------------------
def read_case(case: Case, classes: int | None, label_map: dict[int, int] | None,
              source: VolumeSource | None = None) -> tuple[list[Volume], np.ndarray | None]:
    """(one volume per channel, class indices or None); every channel on the first one's grid.

    ``source`` supplies its file readers (2D PNG sources); volume files are read by default.
    """
    read_image = source.read_image if source else read_channels
    vols = [v for p in case.images for v in read_image(p)]
    if source is not None and source.n_channels and len(vols) != source.n_channels:
        raise DataError(f"{case.images[0]}: case {case.id} has {len(vols)} channel(s) but the source declares "
                        f"{source.n_channels} ({', '.join(source.channel_names or [])})")
    for v in vols[1:]:
        if v.shape != vols[0].shape or not np.allclose(v.affine, vols[0].affine, rtol=1e-5, atol=1e-3):
            raise DataError(f"{v.path}: channel volume has shape {v.shape} and another affine than "
                            f"{vols[0].path.name} {vols[0].shape}; the channels of a case must share a grid")
    if case.label is None:
        return vols, None
    label = (source.read_label if source else read_volume)(case.label)
    check_same_grid(label, vols[0])
    values = label_values(label)
    if label_map is not None:
        values = _map_labels(values, label_map, label.path)
    if classes is not None:
        check_label_range(values, classes, label.path, source.label_fix if source else None)
    return vols, values


def _read_labeled(case: Case, classes: int, label_map: dict[int, int] | None, source: VolumeSource
                  ) -> tuple[list[Volume], np.ndarray]:
    if case.label is None:
        raise DataError(f"{case.images[0]}: image volume without a label volume; add the label, or remove "
                        f"the image")
    vols, labels = read_case(case, classes, label_map, source)
    assert labels is not None
    return vols, labels


def _map_labels(values: np.ndarray, label_map: dict[int, int], path: Path) -> np.ndarray:
    present = np.unique(values)
    unmapped = [int(v) for v in present if int(v) not in label_map]
    if unmapped:
        raise DataError(f"{path}: label values {unmapped[:8]} are not in --label-map; map every value")
    lut = np.zeros(int(present.max(initial=0)) + 1, dtype=np.int64)
    for raw, cls in label_map.items():
        if raw < lut.size:
            lut[raw] = cls
    return lut[values]


def _axis(axis: int, ndim: int = 3) -> int:
    if not -ndim <= axis < ndim:
        raise ConfigError(f"--axis {axis}: a 3D volume has axes 0, 1, 2 (or -1 for the last)")
    return axis % ndim


def _slice_ids(volume_id: str, n: int) -> list[str]:
    width = max(3, len(str(n - 1)))
    return [f"{volume_id}_{k:0{width}d}" for k in range(n)]


def _to_image(channels: list[np.ndarray]) -> np.ndarray:
    """HxW (one channel) or HxWx3 (two channels get a zero third, three are RGB)."""
    if len(channels) == 1:
        return channels[0]
    if len(channels) == 2:
        channels = channels + [np.zeros_like(channels[0])]
    return np.stack(channels, axis=-1)


# -- the build -----------------------------------------------------------------------------
def _rules(source: VolumeSource, opts: VolumeOptions, train_cases: list[Case], n_channels: int
           ) -> tuple[list[IntensityRule], list[str]]:
    """One rule per channel, and how each was chosen (dataset.yaml provenance)."""
    specs, chosen = [], []
    for ch in range(n_channels):
        spec = opts.intensity
        why = f"--intensity {spec}"
        if spec == "auto" and source.auto_rules is not None:
            spec = source.auto_rules(ch)
            why = f"--intensity auto for channel {ch} ({(source.channel_names or ['?'] * n_channels)[ch]}): {spec}"
        specs.append(spec)
        chosen.append(why)
    rules: list[IntensityRule | None] = [None if s == "dataset" else intensity_rule(s) for s in specs]
    if any(r is None for r in rules):
        # nnU-Net's CT rule: one window from the percentiles of the training foreground voxels.
        pooled: dict[int, list[np.ndarray]] = {ch: [] for ch, r in enumerate(rules) if r is None}
        for case in train_cases:
            try:
                vols, labels = read_case(case, None, opts.label_map, source)
            except DataError:
                if opts.skip_bad:
                    continue
                raise
            for ch in pooled:
                a = vols[ch].array
                values = a[labels > 0] if labels is not None and (labels > 0).any() else a.reshape(-1)
                # an even subsample per case keeps memory flat over large training sets
                pooled[ch].append(values[:: max(1, math.ceil(values.size / PER_CASE_VALUES))])
        for ch, samples in pooled.items():
            rules[ch] = dataset_window(samples)
            chosen[ch] += (f" (window from the 0.5-99.5 percentiles of the foreground voxels of the "
                           f"{len(train_cases)} training volumes)")
    return [r for r in rules if r is not None], chosen


def _find_classes(cases: list[Case], opts: VolumeOptions, source: VolumeSource) -> int:
    """K = the largest label value + 1 over all label volumes (when neither source nor --classes says)."""
    top = 0
    for case in cases:
        if case.label is None:
            continue
        try:
            _, values = read_case(case, None, opts.label_map, source)
        except DataError:
            if opts.skip_bad:
                continue  # reported with the others when the case is written
            raise
        top = max(top, int(values.max(initial=0)))  # type: ignore[union-attr]
    k = max(2, top + 1)
    if k > 256:
        raise DataError(f"label values go up to {top}: more than 256 classes cannot be stored as 8-bit "
                        f"masks; map the values to class indices with --label-map, or pass --classes")
    return k


@dataclass
class _Written:
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    slice_group: dict[str, str] = field(default_factory=dict)  # slice ID -> group
    empty: list[str] = field(default_factory=list)  # slice IDs without foreground
    warnings: list[str] = field(default_factory=list)
    ext: dict[str, str] = field(default_factory=dict)  # slice ID -> image extension


def _write_case(case: Case, vols: list[Volume], labels: np.ndarray | None, rules: list[IntensityRule],
                axis: int, classes: int, dest: Path, written: _Written) -> None:
    (dest / "images").mkdir(parents=True, exist_ok=True)
    if labels is not None:
        (dest / "masks").mkdir(parents=True, exist_ok=True)
    eight_bit = []
    for vol, rule in zip(vols, rules):
        u8 = rule.apply(vol.array)  # one window per volume: its slices share the contrast
        warning = contrast_warning(vol.array, u8, vol.path)
        if warning:
            written.warnings.append(warning)
        eight_bit.append(u8)
    n = vols[0].shape[axis]
    ids = _slice_ids(case.id, n)
    for k, sid in enumerate(ids):
        write_image_png(dest / "images" / f"{sid}.png", _to_image([slice_along(a, k, axis) for a in eight_bit]))
        written.ext[sid] = ".png"
        written.slice_group[sid] = case.group
        if labels is not None:
            m = slice_along(labels, k, axis)
            write_label_png(dest / "masks" / f"{sid}.png", m.astype(np.uint8), classes)
            if not m.any():
                written.empty.append(sid)
    v = vols[0]
    written.volumes[case.id] = {
        "slices": ids, "axis": axis, "shape": list(v.shape), "spacing": [float(s) for s in v.spacing],
        "affine": [[float(x) for x in row] for row in v.affine], "orientation": v.orientation,
        "source": str(v.path), **({"label": str(case.label)} if case.label else {}),
        **({"group": case.group} if case.group != case.id else {}), **case.info,
    }


def _drop_empty(written: _Written, dest: Path, keep: float, seed: int) -> int:
    """Keep a seeded ``keep`` share of the training slices without foreground; returns how many went."""
    if keep >= 1.0 or not written.empty:
        return 0
    n_keep = int(math.floor(keep * len(written.empty) + 1e-6))
    rng = np.random.default_rng([int(seed), 4])  # 4: its own stream beside test/val/labeled
    ordered = sorted(written.empty)
    kept = {ordered[i] for i in rng.permutation(len(ordered))[:n_keep]}
    gone = set(ordered) - kept
    for sid in gone:
        (dest / "images" / f"{sid}{written.ext[sid]}").unlink()
        (dest / "masks" / f"{sid}.png").unlink()
        del written.slice_group[sid]
    for rec in written.volumes.values():
        rec["slices_total"] = len(rec["slices"])
        rec["indices"] = [k for k, s in enumerate(rec["slices"]) if s not in gone]
        rec["slices"] = [s for s in rec["slices"] if s not in gone]
    return len(gone)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")


def build_volumes(source: VolumeSource, src: Path, out: str | Path, opts: VolumeOptions) -> dict[str, Any]:
    """Write the layout for ``source`` into ``out`` (atomically); returns the report."""
    out = Path(out)
    if not 0.0 <= opts.empty_slices <= 1.0 or not math.isfinite(opts.empty_slices):
        raise DataError(f"--empty-slices {opts.empty_slices}: give the share of empty training slices to "
                        f"keep, from 0 (foreground slices only) to 1 (all, the default)")
    if not source.pool:
        raise DataError(f"{src}: no cases found for {source.name}; check --src (see docs/DATA.md)")
    axis = _axis(opts.axis)
    if source.two_d and axis != 2:
        raise DataError(f"--axis {opts.axis}: {source.name} holds 2D images; leave --axis out")
    sp = split_groups(source, opts)
    by_group: dict[str, list[Case]] = {}
    for c in source.pool:
        by_group.setdefault(c.group, []).append(c)
    assigned: dict[str, list[Case]] = {
        "train": [c for g in sp.train for c in by_group[g]],
        "val": [c for g in sp.val for c in by_group[g]],
        **{f"test/{k}": [c for g in v for c in by_group[g]] for k, v in sp.tests.items()},
        **{f"test/{k}": v for k, v in source.tests.items()},
    }
    everything = [c for cs in assigned.values() for c in cs]
    n_channels = source.n_channels or len(source.pool[0].images)
    if n_channels > MAX_CHANNELS:
        raise DataError(f"{source.pool[0].images[0]}: {n_channels} channels; decseg's 2D layout holds at "
                        f"most {MAX_CHANNELS} (grey or RGB)")
    bad: list[dict[str, str]] = []

    def guarded(fn: Callable[[Case], Any], case: Case) -> Any:
        try:
            return fn(case)
        except DataError as e:
            if not opts.skip_bad:
                raise
            bad.append({"id": case.id, "problem": str(e)})
            return None

    classes = opts.classes or source.classes
    if classes is None:
        classes = _find_classes(everything, opts, source)
        classes_from = "the largest label value + 1"
    else:
        classes_from = "--classes" if opts.classes else "the source's label list"
    if classes < 2 or classes > 256:
        raise DataError(f"--classes {classes}: give 2..256 classes")
    names = None
    if opts.class_names is not None:
        names = check_class_names(opts.class_names, classes, "--class-names")
    elif source.class_names is not None and len(source.class_names) == classes:
        names = check_class_names(source.class_names, classes, source.description or str(src))
    rules, chosen_by = _rules(source, opts, assigned["train"], n_channels)

    report: dict[str, Any] = {"task": source.name, "src": str(src)}
    with atomic_dir(out, overwrite=opts.overwrite) as tmp:
        per_split: dict[str, _Written] = {}
        for split, cases in assigned.items():
            written = per_split[split] = _Written()
            dest = tmp / split
            for case in cases:
                got = guarded(lambda c: _read_labeled(c, classes, opts.label_map, source), case)
                if got is None:
                    continue
                vols, labels = got
                _write_case(case, vols, labels, rules, axis, classes, dest, written)
            if not written.volumes and split == "train":
                raise DataError("no training volumes are left (every one was left out as bad); check the "
                                "source and --skip-bad")
        dropped = _drop_empty(per_split["train"], tmp / "train", opts.empty_slices, opts.seed)

        for split, written in per_split.items():
            if written.volumes and not source.two_d:
                _write_json(tmp / split / "volumes.json", {"format": 1, "volumes": written.volumes})
        train_w = per_split["train"]
        labeled_groups = set(sp.labeled)
        train_slices = sorted(train_w.slice_group)
        labeled = [s for s in train_slices if train_w.slice_group[s] in labeled_groups]
        unlabeled = [s for s in train_slices if train_w.slice_group[s] not in labeled_groups]
        (tmp / "splits").mkdir()
        write_id_list(tmp / "splits" / "labeled.txt", labeled)
        write_id_list(tmp / "splits" / "unlabeled.txt", unlabeled)
        write_id_list(tmp / "splits" / "val.txt", sorted(per_split["val"].slice_group))
        labeled_vols = sorted(v for v, r in train_w.volumes.items() if r.get("group", v) in labeled_groups)
        vol_lists = {split: sorted(w.volumes) for split, w in per_split.items()}
        _write_json(tmp / "splits" / "volumes.json", {
            **vol_lists, "labeled": labeled_vols,
            "unlabeled": sorted(set(vol_lists["train"]) - set(labeled_vols))})
        if any(c.group != c.id for c in everything):
            groups = {split: sorted({w.volumes[v].get("group", v) for v in w.volumes})
                      for split, w in per_split.items()}
            groups["labeled"] = [g for g in sp.labeled if g in set(groups["train"])]
            _write_json(tmp / "splits" / "patients.json", groups)

        counts = {
            "volumes": {s: len(w.volumes) for s, w in per_split.items()},
            "slices": {s: len(w.slice_group) for s, w in per_split.items()},
            "labeled_cases": len(sp.labeled), "labeled": len(labeled), "unlabeled": len(unlabeled),
            "empty_slices_dropped": dropped, "bad": len(bad),
        }
        tests = {s[5:]: n for s, n in counts["slices"].items() if s.startswith("test/")}
        first = rules[0]
        info: dict[str, Any] = {
            "name": source.name, "channels": 3 if n_channels == 2 else n_channels, "classes": classes,
            "size": source.size,
            **({"class_names": names} if names else {}),
            **({"label_map": {int(k): int(v) for k, v in opts.label_map.items()}} if opts.label_map else {}),
            "intensity": first.to_dict(chosen_by=chosen_by[0] + "; one window per volume"),
            **({"intensity_per_channel": [r.to_dict(chosen_by=w) for r, w in zip(rules, chosen_by)]}
               if n_channels > 1 else {}),
            **({"channel_names": source.channel_names} if source.channel_names else {}),
            "axis": axis, "task": source.name, "source": source.description, "src": str(src),
            "seed": opts.seed, "classes_from": classes_from,
            "train_pool": counts["slices"]["train"] + counts["slices"]["val"],
            "labeled": len(labeled), "unlabeled": len(unlabeled), "labeled_cases": len(sp.labeled),
            "labeled_request": sp.note, "val": counts["slices"]["val"],
            "volumes": counts["volumes"], "test_sets": tests,
            "empty_slices": opts.empty_slices, "empty_slices_dropped": dropped,
        }
        (tmp / "dataset.yaml").write_text(yaml.safe_dump(info, sort_keys=False, allow_unicode=True),
                                          encoding="utf-8")
        report.update({
            "options": {"labeled": opts.labeled, "val": opts.val, "test": opts.test, "seed": opts.seed,
                        "axis": axis, "intensity": opts.intensity, "classes": opts.classes,
                        "empty_slices": opts.empty_slices, "skip_bad": opts.skip_bad},
            "counts": counts, "bad": bad, "ignored": source.ignored,
            "intensity": [describe(r) for r in rules], "warnings": train_w.warnings + [
                w for s, x in per_split.items() if s != "train" for w in x.warnings],
        })
        _write_json(tmp / "prepare_report.json", report)
    for w in report["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return report


def options_from(values: dict[str, Any]) -> VolumeOptions:
    """VolumeOptions from keyword values (None = the default)."""
    opts = VolumeOptions()
    for k, v in values.items():
        if v is not None and hasattr(opts, k):
            setattr(opts, k, v)
    return opts


def prepare_volumes(src: str | Path, out: str | Path, **options: Any) -> dict[str, Any]:
    """``decseg prepare volumes``: see the module docstring."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"--src {src}: folder not found")
    return build_volumes(scan(src), src, out, options_from(options))


__all__ = ["Case", "VolumeSource", "VolumeOptions", "build_volumes", "prepare_volumes", "scan",
           "pair_volumes", "index_volumes", "split_groups", "read_case", "options_from"]
