"""The on-disk dataset layout (docs/DATA.md), read and validated.

    DATA/dataset.yaml                 name, channels, classes, size (+ provenance); optional
                                      class_names (K names) and label_map (raw value: class)
    DATA/train/images/ID.EXT          the training pool (labeled + unlabeled)
    DATA/train/masks/ID.png
    DATA/val/{images,masks}/          optional validation split (model selection)
    DATA/test/SET/{images,masks}/     zero or more test sets
    DATA/splits/labeled.txt           train IDs, one per line
    DATA/splits/unlabeled.txt
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from decseg.config import yaml_problem
from decseg.errors import DataError
from decseg.files import index_by_stem
from decseg.labels import check_class_names, check_label_map, class_names

REQUIRED_KEYS = {"name": str, "channels": int, "classes": int, "size": int}


@dataclass(frozen=True)
class Item:
    """One image of a split: its ID, image file and mask file (None when there is none)."""

    id: str
    image: Path
    mask: Path | None


def read_utf8(path: Path) -> str:
    """A text file of the layout; a byte-order mark is dropped, other encodings are a DataError."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None


def read_id_list(path: Path) -> list[str]:
    """IDs one per line; blank lines are skipped, other whitespace is part of the ID.

    utf-8-sig: a byte-order mark (Windows Notepad writes one) is not part of the first ID.
    """
    text = read_utf8(path)
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def check_id(id_: str, source: Path) -> None:
    if "/" in id_ or "\\" in id_ or id_ in (".", "..") or "\x00" in id_:
        raise DataError(f"{source}: entry {id_!r} is not a plain file ID (it contains a path); "
                        f"list IDs (file names without extension) of train/images only")


class DatasetLayout:
    """A prepared dataset folder. Raises DataError on anything inconsistent.

    ``splits``: a folder with labeled.txt and unlabeled.txt to use instead of ``DATA/splits``
    (config ``data.splits``; ``decseg compare`` writes one per label ratio and seed).
    """

    def __init__(self, root: str | Path, splits: str | Path | None = None):
        self.root = Path(root)
        self.splits_dir = Path(splits) if splits else self.root / "splits"
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found; create one with "
                            f"`decseg prepare` or `decseg synth`")
        self.info = self._read_yaml()
        self.name: str = self.info["name"]
        self.channels: int = self.info["channels"]
        self.classes: int = self.info["classes"]
        self.size: int = self.info["size"]
        where = str(self.root / "dataset.yaml")
        # names per class (evaluation keys, overlays); default background, lesion / class1..
        names = self.info.get("class_names")
        self.class_names: list[str] = (class_names(self.classes) if names is None
                                       else check_class_names(names, self.classes, where))
        # provenance: how prepare turned the source's stored values into the indices of masks/
        raw_map = self.info.get("label_map")
        self.label_map: dict[int, int] | None = (None if raw_map is None
                                                 else check_label_map(raw_map, self.classes, where))
        self._train = self._index("train")
        if not self._train:
            raise DataError(f"{self.root / 'train' / 'images'}: no training images; "
                            f"is {self.root} a prepared dataset?")
        self.labeled_ids = self._read_split("labeled")
        self.unlabeled_ids = self._read_split("unlabeled")
        both = set(self.labeled_ids) & set(self.unlabeled_ids)
        if both:
            raise DataError(f"{self.splits_dir}: {len(both)} IDs are both labeled and unlabeled, "
                            f"e.g. {sorted(both)[:3]}; each training image must be in one list")
        missing = [i for i in self.labeled_ids if i not in self._train or self._train[i].mask is None]
        if missing:
            raise DataError(f"{self.splits_dir / 'labeled.txt'}: {len(missing)} labeled IDs have no "
                            f"mask in train/masks, e.g. {missing[:3]}")

    # -- dataset.yaml -------------------------------------------------------
    def _read_yaml(self) -> dict[str, Any]:
        path = self.root / "dataset.yaml"
        if not path.is_file():
            raise DataError(f"{path}: missing; a dataset folder needs dataset.yaml with "
                            f"name, channels, classes, size (made by `decseg prepare` / `decseg synth`)")
        try:
            info = yaml.safe_load(read_utf8(path))
        except yaml.YAMLError as e:
            raise DataError(f"{path}: not valid YAML ({yaml_problem(e)}); fix the file, or write it "
                            f"again with decseg prepare / decseg synth") from None
        if not isinstance(info, dict):
            raise DataError(f"{path}: must be a mapping with keys {', '.join(REQUIRED_KEYS)}")
        for key, tp in REQUIRED_KEYS.items():
            if key not in info:
                raise DataError(f"{path}: missing key {key!r} (needs {', '.join(REQUIRED_KEYS)})")
            if not isinstance(info[key], tp) or isinstance(info[key], bool):
                raise DataError(f"{path}: {key} must be {tp.__name__}, got {info[key]!r}")
        if info["channels"] < 1 or info["classes"] < 2 or info["size"] < 1:
            raise DataError(f"{path}: channels >= 1, classes >= 2 and size >= 1 are required")
        return info

    # -- folders ------------------------------------------------------------
    def _split_dir(self, split: str) -> Path:
        if split in ("train", "val"):
            return self.root / split
        name = split[5:] if split.startswith("test/") else split
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise DataError(f"{split!r} is not a split name: use train, val or a test set "
                            f"({', '.join(self.test_sets()) or 'none'})")
        return self.root / "test" / name

    def _index(self, split: str) -> dict[str, Item]:
        base = self._split_dir(split)
        images = index_by_stem(base / "images", "images") if (base / "images").is_dir() else {}
        masks = index_by_stem(base / "masks", "masks") if (base / "masks").is_dir() else {}
        return {i: Item(i, p, masks.get(i)) for i, p in images.items()}

    def _read_split(self, which: str) -> list[str]:
        path = self.splits_dir / f"{which}.txt"
        if not path.is_file():
            if self.splits_dir != self.root / "splits":
                raise DataError(f"{path}: missing; the data.splits folder {self.splits_dir} must list the "
                                f"{which} training IDs there (one ID per line)")
            raise DataError(f"{path}: missing; every dataset lists its {which} training IDs there "
                            f"(re-run `decseg prepare`, or write the file: one ID per line)")
        ids = read_id_list(path)
        unknown = []
        for i in ids:
            check_id(i, path)
            if i not in self._train:
                unknown.append(i)
        if unknown:
            raise DataError(f"{path}: {len(unknown)} IDs are not in {self.root / 'train' / 'images'}, "
                            f"e.g. {unknown[:3]}; fix the list or re-run `decseg prepare`")
        if len(set(ids)) != len(ids):
            raise DataError(f"{path}: lists some IDs twice; list each once")
        return ids

    # -- public -------------------------------------------------------------
    def has_split(self, split: str) -> bool:
        return (self._split_dir(split) / "images").is_dir()

    def test_sets(self) -> list[str]:
        test = self.root / "test"
        if not test.is_dir():
            return []
        return sorted(p.name for p in test.iterdir() if (p / "images").is_dir())

    def items(self, split: str) -> list[Item]:
        """The images of ``train``, ``val`` or a test set (``NAME`` or ``test/NAME``), by ID."""
        if split == "train":
            return [self._train[i] for i in sorted(self._train)]
        if not self.has_split(split):
            raise DataError(f"{self._split_dir(split)}: no such split in {self.root}; available: "
                            f"{', '.join(['train'] + (['val'] if self.has_split('val') else []) + self.test_sets())}")
        return [v for _, v in sorted(self._index(split).items())]

    def train_item(self, id_: str) -> Item:
        return self._train[id_]

    def train_ids(self) -> list[str]:
        return sorted(self._train)

    def __repr__(self) -> str:
        return (f"DatasetLayout({str(self.root)!r}, name={self.name!r}, labeled={len(self.labeled_ids)}, "
                f"unlabeled={len(self.unlabeled_ids)}, test_sets={self.test_sets()})")
