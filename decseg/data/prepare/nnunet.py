"""nnU-Net v2 raw datasets (``DatasetXXX_Name/``) sliced into the 2D layout (docs/DATA.md).

    dataset.json          channel_names {"0": "CT", ...}, labels {name: int}, numTraining, file_ending
    imagesTr/CASE_0000.ext, CASE_0001.ext, ...   one file per channel (4-digit suffix)
    labelsTr/CASE.ext
    imagesTs/             optional, unlabeled: not written (listed under ignored in the report)

File endings: ``.nii.gz`` / ``.nii`` / ``.nrrd`` (3D, sliced like ``prepare volumes``) and ``.png``
(2D; an RGB ``CASE_0000.png`` may carry the channels R, G, B, as nnU-Net's natural-image reader
reads it). A dataset.json that disagrees with its files is a DataError naming the file.
``--intensity auto`` follows nnU-Net: a channel named CT gets one window from the 0.5-99.5
percentiles of the training foreground voxels; other channels a per-volume percentile window.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from decseg.data.imageio import image_pixels
from decseg.data.prepare.volumes import Case, VolumeSource
from decseg.data.volumes import Volume, read_volume
from decseg.errors import DataError
from decseg.files import is_ignorable
from decseg.labels import read_raw_label

VOLUME_ENDINGS = (".nii.gz", ".nii", ".nrrd")
ENDINGS = VOLUME_ENDINGS + (".png",)
REQUIRED = ("channel_names", "labels", "numTraining", "file_ending")
_CHANNEL_FILE = re.compile(r"(.+)_(\d{4})$")


def _read_png_channels(path: Path) -> list[Volume]:
    arr = image_pixels(path)  # HxWxC, C = 1 or 3
    return [Volume(arr[..., c][..., None], (1.0, 1.0, 1.0), np.eye(4), path) for c in range(arr.shape[-1])]


def _read_png_label(path: Path) -> Volume:
    arr = read_raw_label(path)
    if arr.ndim != 2:
        raise DataError(f"{path}: a label PNG must be a grey or palette image of class indices, got shape "
                        f"{arr.shape}; save the labels as 8-bit indices")
    return Volume(arr[..., None], (1.0, 1.0, 1.0), np.eye(4), path)


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: missing; an nnU-Net v2 raw dataset folder (DatasetXXX_Name) holds "
                        f"dataset.json, imagesTr/ and labelsTr/; point --src at that folder")
    try:
        info = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e}); fix the file") from None
    if not isinstance(info, dict):
        raise DataError(f"{path}: must be a JSON object with {', '.join(REQUIRED)}")
    missing = [k for k in REQUIRED if k not in info]
    if missing:
        old = " (this looks like an nnU-Net v1 dataset.json: convert it with nnUNetv2_convert_old_nnUNet_dataset)" \
            if "modality" in info else ""
        raise DataError(f"{path}: missing key(s) {', '.join(missing)}; nnU-Net v2's dataset.json needs "
                        f"{', '.join(REQUIRED)}{old}")
    return info


def _labels(info: dict, path: Path) -> tuple[int, list[str]]:
    labels = info["labels"]
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{path}: labels must map names to integers, e.g. {{\"background\": 0, \"tumor\": 1}}")
    if "ignore" in labels:
        raise DataError(f"{path}: declares an 'ignore' label; decseg trains on every pixel, so relabel "
                        f"those pixels (e.g. to background) and drop 'ignore' from labels")
    by_value: dict[int, str] = {}
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise DataError(f"{path}: label {name!r} is a region ({value}); region-based labels are not "
                            f"supported: give each class one integer")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DataError(f"{path}: label {name!r} has value {value!r}; labels must be integers >= 0")
        if value in by_value:
            raise DataError(f"{path}: labels {by_value[value]!r} and {name!r} share the value {value}")
        by_value[value] = name
    k = len(by_value)
    if sorted(by_value) != list(range(k)):
        raise DataError(f"{path}: label values {sorted(by_value)} must be consecutive from 0 (0..{k - 1}), "
                        f"as nnU-Net requires")
    return k, [by_value[i] for i in range(k)]


def _cases(folder: Path, ending: str, n_channels: int, json_path: Path, ignored: list[str]
           ) -> dict[str, list[Path]]:
    """CASE -> its channel files, checked against file_ending and channel_names."""
    found: dict[str, dict[int, Path]] = {}
    for p in sorted(folder.iterdir()):
        if is_ignorable(p) or p.is_dir():
            continue
        if not p.name.endswith(ending):
            raise DataError(f"{p}: does not end in {ending}, the file_ending of {json_path}; fix file_ending "
                            f"or convert the file")
        m = _CHANNEL_FILE.fullmatch(p.name[: -len(ending)])
        if m is None:
            raise DataError(f"{p}: an nnU-Net image is named CASE_XXXX{ending} (XXXX the 4-digit channel); "
                            f"rename it")
        found.setdefault(m.group(1), {})[int(m.group(2))] = p
    out: dict[str, list[Path]] = {}
    for case, chans in sorted(found.items()):
        extra = sorted(c for c in chans if c >= n_channels)
        if extra:
            raise DataError(f"{chans[extra[0]]}: channel {extra[0]:04d}, but {json_path} declares "
                            f"{n_channels} channel(s) in channel_names")
        files = [chans.get(c) for c in range(n_channels)]
        if ending != ".png" or len(chans) != 1:  # an RGB PNG may carry all channels in _0000
            missing = [c for c in range(n_channels) if files[c] is None]
            if missing:
                raise DataError(f"{folder / f'{case}_{missing[0]:04d}{ending}'}: missing; {json_path} declares "
                                f"{n_channels} channel(s), so every case needs _0000 to _{n_channels - 1:04d}")
        out[case] = [f for f in files if f is not None]
    return out


def scan(src: Path) -> VolumeSource:
    json_path = src / "dataset.json"
    info = _load_json(json_path)
    ending = str(info["file_ending"])
    if ending not in ENDINGS:
        raise DataError(f"{json_path}: file_ending {ending!r} is not supported (supported: "
                        f"{', '.join(ENDINGS)}); convert the dataset to NIfTI")
    channels = info["channel_names"]
    if not isinstance(channels, dict) or not channels:
        raise DataError(f"{json_path}: channel_names must map \"0\", \"1\", ... to names, e.g. {{\"0\": \"CT\"}}")
    try:
        names = [str(channels[k]) for k in sorted(channels, key=int)]
    except ValueError:
        raise DataError(f"{json_path}: channel_names keys must be \"0\", \"1\", ...; got {list(channels)}") from None
    if sorted(int(k) for k in channels) != list(range(len(channels))):
        raise DataError(f"{json_path}: channel_names keys must be 0..{len(channels) - 1}; got {list(channels)}")
    classes, class_names = _labels(info, json_path)
    images, labels = src / "imagesTr", src / "labelsTr"
    for d in (images, labels):
        if not d.is_dir():
            raise DataError(f"{d}: missing; an nnU-Net v2 raw dataset holds imagesTr/ and labelsTr/")
    ignored: list[str] = []
    cases = _cases(images, ending, len(names), json_path, ignored)
    label_files: dict[str, Path] = {}
    for p in sorted(labels.iterdir()):
        if is_ignorable(p) or p.is_dir():
            continue
        if not p.name.endswith(ending):
            raise DataError(f"{p}: does not end in {ending}, the file_ending of {json_path}")
        label_files[p.name[: -len(ending)]] = p
    for case in cases:
        if case not in label_files:
            raise DataError(f"{labels / (case + ending)}: missing; every case in imagesTr needs its label")
    for case, p in label_files.items():
        if case not in cases:
            raise DataError(f"{p}: label without images (no {images / (case + '_0000' + ending)})")
    n = info["numTraining"]
    if isinstance(n, bool) or not isinstance(n, int) or n != len(cases):
        raise DataError(f"{json_path}: numTraining is {n!r} but imagesTr holds {len(cases)} case(s); fix "
                        f"numTraining or the folder")
    if (src / "imagesTs").is_dir():
        ignored.append(f"{src / 'imagesTs'} (no labels: not written; predict its cases after slicing them)")
    two_d = ending == ".png"
    ct = [i for i, nm in enumerate(names) if nm.strip().lower() == "ct"]
    source = VolumeSource(
        name=src.name, pool=[Case(c, files, label_files[c], c) for c, files in cases.items()],
        description=f"nnU-Net v2 raw dataset {src.name} ({ending})", ignored=ignored,
        channel_names=names, classes=classes, class_names=class_names, two_d=two_d,
        auto_rules=lambda ch: "dataset" if ch in ct else "auto", n_channels=len(names),
        label_fix=f"{json_path} declares {classes} labels ({', '.join(class_names)}); add the missing "
                  f"label there or fix the label file")
    if two_d:
        source.read_image, source.read_label = _read_png_channels, _read_png_label
    else:
        source.read_image = lambda p: [read_volume(p)]
    return source


__all__ = ["scan", "ENDINGS"]
