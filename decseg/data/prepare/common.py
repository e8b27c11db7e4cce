"""What every source shares: pairing the files found, checking and staging each pair,
assigning splits and writing the layout (docs/DATA.md).

A source module (polyp, isic2018, lgg, folder) scans its download into a :class:`Found`
with the helpers here and states its :class:`SourceSettings`; :func:`build` does the rest.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

import numpy as np
import yaml
from PIL import Image

from decseg.data.imageio import (fit_channels, image_pixels, read_mask, read_raw, to_uint8, write_image_png,
                                  write_mask_png)
from decseg.data.intensity import IntensityRule, contrast_warning, dataset_window, describe, intensity_rule
from decseg.data.splits import Amount, labeled_split, parse_amount, take, write_id_list
from decseg.errors import DataError, naming
from decseg.files import IMAGE_EXTENSIONS, index_by_stem, is_ignorable
from decseg.io import atomic_dir
from decseg.labels import check_class_names, check_label_map, read_label, write_label_png

KEEP_FORMATS = (".png", ".jpg", ".jpeg", ".bmp")  # copied byte for byte when 8-bit grey/RGB
MAX_LISTED = 20


@dataclass
class Pair:
    """One sample found in the download: its ID, files, and patient (LGG) if any."""

    id: str
    image: Path | None
    mask: Path | None
    group: str | None = None


@dataclass
class Found:
    """What a task's scanner found: the training pool, given test sets, and files it skipped."""

    train: list[Pair]
    tests: dict[str, list[Pair]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    source: str = ""
    carve_tests: dict[str, list[Pair]] = field(default_factory=dict)  # pools to split a test set from


@dataclass(frozen=True)
class SourceSettings:
    """A source's defaults and the way its splits are made."""

    size: int  # input size S recorded in dataset.yaml (the paper's)
    val: float  # default --val: part of the training pool kept for validation
    test: float  # default --test: part carved for testing where the download has no test split
    paper_test: float | None = None  # --test under --protocol paper, where it differs
    paper_only_lesion: bool = False  # --protocol paper keeps only the images with a lesion
    by_patient: bool = False  # val and test take whole patients (Pair.group), never single images
    test_from_pool: bool = False  # --test carves test/test from the pool when no test sets are given


# -- scanning the download ---------------------------------------------------------------
def image_files(folder: Path, ignored: list[str]) -> dict[str, Path]:
    """stem -> image file; other files are noted in ``ignored``; duplicate stems are an error."""
    return index_by_stem(folder, "files", strict=False, skipped=ignored,
                         fix="keep one of them (the ID must be unique)")


def pair_folders(images: Path, masks: Path, ignored: list[str], mask_suffix: str = "",
                 group: str | None = None) -> list[Pair]:
    """Match ``images/ID.*`` with ``masks/ID{mask_suffix}.*``; unmatched files become half pairs.

    An images folder without a single image is a DataError that says so.
    """
    imgs = image_files(images, ignored)
    if not imgs:
        what = "holds no image files" if any(images.iterdir()) else "is empty"
        raise DataError(f"{images}: the images folder {what}; put the images there "
                        f"({', '.join(IMAGE_EXTENSIONS)}), or point --src at the folder that holds them")
    msks: dict[str, Path] = {}
    for stem, p in image_files(masks, ignored).items():
        if mask_suffix and not stem.endswith(mask_suffix):
            ignored.append(str(p))
            continue
        msks[stem[: len(stem) - len(mask_suffix)] if mask_suffix else stem] = p
    ids = sorted(set(imgs) | set(msks))
    return [Pair(i, imgs.get(i), msks.get(i), group) for i in ids]


def _child(folder: Path, *names: str) -> Path | None:
    for n in names:
        if (folder / n).is_dir():
            return folder / n
    return None


def images_masks(folder: Path) -> tuple[Path, Path] | None:
    """The image and mask folders inside ``folder`` (images/ and masks/, or a usual variant), or None."""
    im, mk = _child(folder, "images", "image", "Images"), _child(folder, "masks", "mask", "Masks")
    return (im, mk) if im and mk else None


def find_folders(src: Path, test: Callable[[Path], bool], depth: int = 2) -> list[Path]:
    """Folders under ``src`` (itself included, up to ``depth`` levels) for which ``test`` holds."""
    found, level = [], [src]
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            if test(d):
                found.append(d)
            else:
                nxt += sorted(p for p in d.iterdir() if p.is_dir() and not is_ignorable(p))
        level = nxt
    return found


# -- checking and staging ----------------------------------------------------------------
@dataclass
class Checked:
    pair: Pair
    problem: str | None = None  # why it is bad
    bad_path: str | None = None
    converted: str | None = None  # why the image was re-encoded as PNG
    lesion: bool = False
    ext: str = ".png"
    contrast: str | None = None  # contrast_warning of the converted image
    dtype: str = ""  # the stored pixel type of the image


def _conversion_reason(path: Path) -> str | None:
    ext = path.suffix.lower()
    if ext not in KEEP_FORMATS:
        return f"{ext} converted to PNG"
    try:
        with Image.open(path) as img:
            mode = img.mode
    except Exception:  # noqa: BLE001 - the full read reports it
        return None
    if mode not in ("L", "RGB"):
        return f"mode {mode} converted to 8-bit PNG"
    return None


def _label_map_problem(mask_path: Path) -> str | None:
    """Why an all-background mask is suspect: non-zero values that the mask rule reads as
    background (a class-index mask such as {0, 2}, or a lesion stored as 100) would silently
    become an empty mask. Only empty masks are re-read, so this costs nothing otherwise."""
    raw = read_raw(mask_path)
    if raw.ndim == 3 and raw.shape[-1] in (2, 4):
        raw = raw[..., :-1]  # alpha is ignored by the mask rule too
    top = int(raw.max(initial=0)) if raw.dtype.kind in "uib" else 0
    # JPEG compression leaves small noise in a truly empty mask; lossless formats do not.
    noise = 32 if mask_path.suffix.lower() in (".jpg", ".jpeg") else 1
    if top <= noise:
        return None  # truly empty (or a float mask, which read_mask already thresholds at 0.5)
    return (f"mask values go up to {top} but none is above half the full scale, so it would become an "
            f"empty mask; save the lesion as 255 (or as 1 in a 0/1 mask) and the background as 0")


AUTO = intensity_rule("auto")


def _eight_bit(path: Path, pixels: np.ndarray, rule: IntensityRule) -> tuple[np.ndarray, str | None]:
    """(uint8 HxWx3 image, contrast warning or None) of an image's stored values under ``rule``."""
    image8 = to_uint8(pixels, path, rule)
    return fit_channels(image8, 3, path), contrast_warning(pixels, image8, path)


def _write_converted(dest: Path, image: np.ndarray) -> None:
    # Keep grey images grey: the reader repeats the channel at load time.
    raw_grey = bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())
    write_image_png(dest, image[..., :1] if raw_grey else image)


@dataclass(frozen=True)
class MaskRule:
    """How the source's masks become the layout's: K classes, and the stored value -> class map
    (``--label-map``) when the masks code the classes as other values (0/85/170/255)."""

    classes: int = 2
    label_map: dict[int, int] | None = None

    @property
    def binary_rule(self) -> bool:
        """Binary masks without a map are read with the binary mask rule (docs/DATA.md)."""
        return self.classes == 2 and self.label_map is None


BINARY = MaskRule()


def mask_rule(classes: int, label_map: dict[int, int] | None = None) -> MaskRule:
    """``--classes`` and ``--label-map`` checked: 2 <= K <= 256 (one 8-bit PNG value per class)."""
    if isinstance(classes, bool) or not isinstance(classes, int) or not 2 <= classes <= 256:
        raise DataError(f"--classes {classes!r}: give the number of classes K with background, "
                        f"2 (binary) to 256")
    if label_map is not None:
        label_map = check_label_map(label_map, classes, "--label-map")
    return MaskRule(classes, label_map)


def _check_and_stage(pair: Pair, stage: Path, intensity: IntensityRule = AUTO,
                     masks: MaskRule = BINARY) -> Checked:
    """Decode and check one pair; write it to ``stage/{images,masks}`` when it is good
    (an image that is not copied byte for byte is made 8-bit by ``intensity``; its mask holds
    the class indices of ``masks``)."""
    if pair.image is None:
        return Checked(pair, "mask without an image", str(pair.mask))
    if pair.mask is None:
        return Checked(pair, "image without a mask", str(pair.image))
    try:
        pixels = image_pixels(pair.image)
        image, contrast = _eight_bit(pair.image, pixels, intensity)
    except DataError as e:
        return Checked(pair, str(e).split(": ", 1)[-1], str(pair.image))
    try:
        # K > 2 (or a label map): class indices 0..K-1; a value outside is this file's problem
        mask = read_mask(pair.mask) if masks.binary_rule else read_label(pair.mask, masks.classes, masks.label_map)
        if masks.classes == 2:
            mask = mask.astype(bool)
    except DataError as e:
        return Checked(pair, str(e).split(": ", 1)[-1], str(pair.mask))
    if mask.shape != image.shape[:2]:
        return Checked(pair, f"mask is {mask.shape[1]}x{mask.shape[0]} but the image {pair.image.name} is "
                             f"{image.shape[1]}x{image.shape[0]}", str(pair.mask))
    if masks.binary_rule and not mask.any():
        problem = _label_map_problem(pair.mask)
        if problem:
            return Checked(pair, problem, str(pair.mask))
    reason = _conversion_reason(pair.image)
    if reason is None:
        ext = pair.image.suffix.lower()
        dest = stage / "images" / f"{pair.id}{ext}"
        with naming(dest):  # a full disk names the file being written
            shutil.copyfile(pair.image, dest)
    else:
        ext = ".png"
        _write_converted(stage / "images" / f"{pair.id}.png", image)
    if masks.classes == 2:
        write_mask_png(stage / "masks" / f"{pair.id}.png", mask)
    else:
        write_label_png(stage / "masks" / f"{pair.id}.png", mask, masks.classes)
    return Checked(pair, converted=reason, lesion=bool(mask.any()), ext=ext,
                   contrast=contrast if reason else None, dtype=str(pixels.dtype))


def _check_all(pairs: list[Pair], stage: Path, workers: int, intensity: IntensityRule = AUTO,
               masks: MaskRule = BINARY) -> list[Checked]:
    # Image decoding releases the GIL, so threads give a real speed-up here.
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(lambda p: _check_and_stage(p, stage, intensity, masks), pairs))


def _dataset_rule(train: list[Checked], staged: list[tuple[Path, list[Checked]]],
                  workers: int) -> tuple[IntensityRule, int]:
    """--intensity dataset: one window from the 0.5/99.5 percentiles of all pixels of the train/
    images (never val or test; all pixels, not the masks' foreground, which marks lesions and
    would leak the unlabeled images' labels), then every converted image re-encoded with it.
    Returns (the window, how many train images it came from)."""
    wide = [c for c in train if c.converted and c.dtype not in ("uint8", "bool")]
    rule = dataset_window(image_pixels(c.pair.image) for c in wide)

    def restage(item: tuple[Path, Checked]) -> None:
        stage, c = item
        image, c.contrast = _eight_bit(c.pair.image, image_pixels(c.pair.image), rule)
        _write_converted(stage / "images" / f"{c.pair.id}.png", image)

    todo = [(stage, c) for stage, cs in staged for c in cs if c.converted and not c.problem]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(restage, todo))
    return rule, len(wide)


def _type_counts(checked: list[Checked]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in checked:
        counts[c.dtype] = counts.get(c.dtype, 0) + 1
    return dict(sorted(counts.items()))


def _intensity_choice(spec: str) -> IntensityRule | None:
    """The rule of a --intensity value (a data.intensity form), or None for "dataset"."""
    return None if spec == "dataset" else intensity_rule(spec)


def _chosen_by(spec: str, rule: IntensityRule, n_wide: int, n_window: int) -> str:
    if spec == "dataset":
        return (f"--intensity dataset: {describe(rule)} from the 0.5 and 99.5 percentiles of all pixels "
                f"of the {n_window} non-8-bit train/ images (val and test not used)")
    option = f"--window={rule.low:g},{rule.high:g}" if rule.mode == "window" else f"--intensity {spec}"
    return f"{option}: {describe(rule)}; {n_wide} image(s) were not 8-bit"


def _move(stage: Path, checked: Iterable[Checked], dest: Path) -> list[str]:
    (dest / "images").mkdir(parents=True, exist_ok=True)
    (dest / "masks").mkdir(parents=True, exist_ok=True)
    ids = []
    for c in checked:
        os.replace(stage / "images" / f"{c.pair.id}{c.ext}", dest / "images" / f"{c.pair.id}{c.ext}")
        os.replace(stage / "masks" / f"{c.pair.id}.png", dest / "masks" / f"{c.pair.id}.png")
        ids.append(c.pair.id)
    return ids


# -- splitting ---------------------------------------------------------------------------
def _keep_count(amount: Amount, total: int, option: str) -> int:
    """How many of ``total`` units stay when ``amount`` (fraction or count) is taken away."""
    if isinstance(amount, float):
        return int(math.floor((1.0 - amount) * total + 1e-6))
    if amount > total:
        raise DataError(f"{option} {amount}: only {total} available")
    return total - amount


def _carve(items: list[Checked], amount: Amount, seed: int, purpose: str, option: str,
           by_group: bool) -> tuple[list[Checked], list[Checked]]:
    """(taken, rest): a seeded part of ``items``, whole groups (patients) when ``by_group``.

    For the test split the *kept* part is floored (ISIC: 2,075 of 2,594 stay, 519 go to test);
    for validation the taken part is floored (5% of 1,450 -> 72).
    """
    units = sorted({c.pair.group for c in items}) if by_group else sorted(c.pair.id for c in items)
    if purpose == "test":
        n_take = len(units) - _keep_count(amount, len(units), option)
    elif isinstance(amount, float):
        # At least one validation unit when asked for any: model selection needs a val set.
        n_take = int(math.floor(amount * len(units) + 1e-6))
        if amount > 0 and n_take == 0 and len(units) >= 2:
            n_take = 1
    else:
        if amount > len(units):
            raise DataError(f"{option} {amount}: only {len(units)} available")
        n_take = amount
    chosen = set(take(units, n_take, seed, purpose)[0])
    key = (lambda c: c.pair.group) if by_group else (lambda c: c.pair.id)
    return [c for c in items if key(c) in chosen], [c for c in items if key(c) not in chosen]


def _fail_or_skip(bad: list[Checked], src: Path, skip_bad: bool, out: Path) -> None:
    if not bad or skip_bad:
        return
    lines = [f"  {c.bad_path}: {c.problem}" for c in bad[:MAX_LISTED]]
    more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    raise DataError(f"{len(bad)} problem(s) in {src}:\n" + "\n".join(lines) + more +
                    f"\nFix or remove these files, or re-run with --skip-bad to leave them out "
                    f"(they are then listed in {out / 'prepare_report.json'})")


@dataclass
class Splits:
    """Where every good sample goes."""

    train: list[Checked]
    val: list[Checked]
    tests: dict[str, list[Checked]]  # carved test sets
    labeled: list[str]
    unlabeled: list[str]
    labeled_note: str
    pool_size: int  # train + val
    dropped_no_lesion: int = 0


def _good(checked: Iterable[Checked]) -> list[Checked]:
    return [c for c in checked if not c.problem]


def _assign_splits(settings: SourceSettings, checked_train: list[Checked],
                   checked_carve: dict[str, list[Checked]], has_tests: bool, labeled: Amount, val: Amount,
                   test: Amount, seed: int, only_lesion: bool) -> Splits:
    by_group = settings.by_patient
    dropped = 0
    pool = _good(checked_train)
    tests: dict[str, list[Checked]] = {}
    for name, cs in checked_carve.items():
        cs = _good(cs)
        if only_lesion:
            dropped += sum(not c.lesion for c in cs)
            cs = [c for c in cs if c.lesion]
        tests[name], rest = _carve(cs, test, seed, "test", "--test", by_group)
        pool = pool + rest
    if settings.test_from_pool and test and not has_tests:
        tests["test"], pool = _carve(pool, test, seed, "test", "--test", by_group)
    if not pool:
        raise DataError("no training images are left: every image was left out as bad or went to a test "
                        "set; check the download, --skip-bad and --test")
    val_items, train_items = _carve(pool, val, seed, "val", "--val", by_group) if val else ([], pool)
    lab, unl, note = labeled_split([c.pair.id for c in train_items], labeled, seed, base=len(pool))
    if not lab:
        raise DataError(f"--labeled {labeled}: gives no labeled images out of {len(pool)}")
    return Splits(train_items, val_items, tests, lab, unl, note, len(pool), dropped)


def _check_unique_ids(found: Found, src: Path) -> None:
    seen: dict[str, Pair] = {}
    for p in found.train + [p for ps in found.carve_tests.values() for p in ps]:
        if p.id in seen:
            raise DataError(f"ID {p.id!r} occurs twice in {src} ({seen[p.id].image or seen[p.id].mask} and "
                            f"{p.image or p.mask}); rename one of them")
        seen[p.id] = p


def _staging(folder: Path) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir(parents=True)
    return folder


def build(source: ModuleType, task: str, src: str | Path, out: str | Path, *, labeled: Amount | str,
          val: Amount | str | None, test: Amount | str | None, seed: int, skip_bad: bool, only_lesion: bool,
          protocol: str, workers: int, overwrite: bool, intensity: str = "auto", classes: int = 2,
          label_map: dict[int, int] | None = None, class_names: list[str] | None = None) -> dict[str, Any]:
    """``prepare_dataset`` for one source module (its ``scan`` and ``SETTINGS``).

    ``classes`` K, ``label_map`` {stored mask value: class} and ``class_names`` (K names) go to
    dataset.yaml; the masks written hold the class indices (0/255 when K = 2).

    ``intensity``: a data.intensity form, or "dataset" (one window from the train/ images)."""
    settings: SourceSettings = source.SETTINGS
    if protocol not in ("standard", "paper"):
        raise DataError(f"--protocol {protocol!r}: choose standard or paper")
    masks = mask_rule(classes, label_map)
    if class_names is not None:
        class_names = check_class_names(class_names, masks.classes, "--class-names")
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DataError(f"--src {src}: folder not found")
    labeled = parse_amount(labeled, "--labeled")
    val = settings.val if val is None else parse_amount(val, "--val")
    if test is None:
        paper = protocol == "paper" and settings.paper_test is not None
        test = settings.paper_test if paper else settings.test
    test = parse_amount(test, "--test")
    if protocol == "paper" and settings.paper_only_lesion:
        only_lesion = True

    first_rule = _intensity_choice(intensity)  # before any scanning: a bad value fails at once
    found = source.scan(src)
    _check_unique_ids(found, src)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        # Every good pair is written once into a staging folder, then moved to its split.
        # Given test sets may reuse training names, so each has its own staging folder.
        stage = _staging(tmp / ".staging")
        rule = first_rule or AUTO  # dataset: auto until the split says which images are train/
        checked_train = _check_all(found.train, stage, workers, rule, masks)
        checked_carve = {k: _check_all(v, stage, workers, rule, masks) for k, v in found.carve_tests.items()}
        checked_tests = {name: (tst, _check_all(pairs, tst, workers, rule, masks))
                         for name, pairs in found.tests.items()
                         for tst in [_staging(tmp / ".staging-test" / name)]}
        all_checked = checked_train + [c for v in checked_carve.values() for c in v] + \
            [c for _, v in checked_tests.values() for c in v]
        bad = [c for c in all_checked if c.problem]
        _fail_or_skip(bad, src, skip_bad, out)

        sp = _assign_splits(settings, checked_train, checked_carve, bool(found.tests), labeled, val, test,
                            seed, only_lesion)
        n_window = 0
        if first_rule is None:
            staged = [(stage, checked_train + [c for v in checked_carve.values() for c in v]),
                      *checked_tests.values()]
            rule, n_window = _dataset_rule(sp.train, staged, workers)
        good = _good(all_checked)
        n_wide = sum(c.dtype not in ("uint8", "bool") for c in good)
        intensity_record = rule.to_dict(chosen_by=_chosen_by(intensity, rule, n_wide, n_window))
        contrast = [{"id": c.pair.id, "path": str(c.pair.image), "warning": c.contrast}
                    for c in good if c.contrast]
        _move(stage, sp.train, tmp / "train")
        if sp.val:
            _move(stage, sp.val, tmp / "val")
        for name, cs in sp.tests.items():
            _move(stage, cs, tmp / "test" / name)
        for name, (tst, cs) in checked_tests.items():
            _move(tst, _good(cs), tmp / "test" / name)
        shutil.rmtree(stage)
        shutil.rmtree(tmp / ".staging-test", ignore_errors=True)

        (tmp / "splits").mkdir()
        write_id_list(tmp / "splits" / "labeled.txt", sp.labeled)
        write_id_list(tmp / "splits" / "unlabeled.txt", sp.unlabeled)
        write_id_list(tmp / "splits" / "val.txt", sorted(c.pair.id for c in sp.val))
        test_counts = {name: len(cs) for name, cs in sp.tests.items()}
        test_counts.update({name: len(_good(cs)) for name, (_, cs) in checked_tests.items()})
        by_group = settings.by_patient
        if by_group:
            groups = {"train": sorted({c.pair.group for c in sp.train}),
                      "val": sorted({c.pair.group for c in sp.val}),
                      **{f"test/{k}": sorted({c.pair.group for c in v}) for k, v in sp.tests.items()}}
            (tmp / "splits" / "patients.json").write_text(json.dumps(groups, indent=1), encoding="utf-8")

        info = {
            "name": task, "channels": 3, "classes": masks.classes, "size": settings.size,
            "task": task, "source": found.source, "src": str(src), "seed": seed, "protocol": protocol,
            "train_pool": sp.pool_size, "labeled": len(sp.labeled), "unlabeled": len(sp.unlabeled),
            "labeled_request": sp.labeled_note, "val": len(sp.val),
            "val_request": f"{val} of the training pool" + (" (by patient)" if by_group else ""),
            "val_storage": "val/ folder, carved from the training pool before the labeled split",
            "test_sets": test_counts, "only_lesion": only_lesion,
            "intensity": intensity_record,
        }
        if class_names is not None:
            info["class_names"] = class_names
        if masks.label_map is not None:  # provenance: masks/ already hold the indices
            info["label_map"] = dict(sorted(masks.label_map.items()))
        (tmp / "dataset.yaml").write_text(yaml.safe_dump(info, sort_keys=False, allow_unicode=True),
                                          encoding="utf-8")
        report = {
            "task": task, "src": str(src), "options": {
                "labeled": labeled, "val": val, "test": test, "seed": seed, "skip_bad": skip_bad,
                "only_lesion": only_lesion, "protocol": protocol, "intensity": intensity,
                "classes": masks.classes, "label_map": masks.label_map},
            "counts": {"found": len(all_checked), "bad": len(bad), "train_pool": sp.pool_size,
                       "labeled": len(sp.labeled), "unlabeled": len(sp.unlabeled), "val": len(sp.val),
                       "test": test_counts, "dropped_without_lesion": sp.dropped_no_lesion},
            "bad": [{"path": c.bad_path, "id": c.pair.id, "problem": c.problem} for c in bad],
            "converted": [{"id": c.pair.id, "from": str(c.pair.image), "why": c.converted}
                          for c in all_checked if c.converted and not c.problem],
            "ignored": found.ignored,
            "intensity": {**intensity_record, "source_types": _type_counts(good)},
            "contrast_warnings": contrast,
        }
        (tmp / "prepare_report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False),
                                                 encoding="utf-8")
    return report
