"""Class-index masks: reading them, the palette, writing predictions (docs/DATA.md, docs/PREDICT.md).

A dataset of K classes (``classes: K`` in dataset.yaml):
- K = 2 (binary): masks are 0/255 grey PNGs; a mask is read with the binary mask rule of
  :func:`binary_mask` (used by ``decseg.data.imageio.read_mask`` too) and predictions are 0/255.
- K > 2: masks and predictions are 8-bit PNGs whose pixel values ARE the class indices 0..K-1,
  written as palette ("P") PNGs so that viewers show colours; grey ("L") index PNGs, 16-bit
  grey PNGs and TIFFs of indices are read too. A palette PNG is read as its indices, never as RGB.
  Masks that code the classes as other values (0/85/170/255) are read through a ``label_map``
  {raw value: class}.

NumPy, Pillow and the layer below only (no torch): the data layer, the evaluator and the
prediction writer all read and write labels here.
"""
from __future__ import annotations

import colorsys
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

from decseg.errors import DataError, naming
from decseg.files import open_image, read_tiff_page

TIFF_EXTENSIONS = (".tif", ".tiff")
MAX_SHOWN = 8  # values named in an error message


def _build_palette() -> np.ndarray:
    """(256, 3) uint8: class 0 black, then hand-picked distinct colours, then evenly turning hues."""
    picked = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (145, 30, 180),
              (70, 240, 240), (245, 130, 48), (240, 50, 230), (210, 245, 60), (250, 190, 212),
              (0, 128, 128), (170, 110, 40), (128, 0, 0), (170, 255, 195), (128, 128, 0), (0, 0, 128),
              (255, 255, 255)]
    colours = list(picked)
    golden = 0.618033988749895  # hue steps by the golden ratio stay apart for any count
    for i in range(256 - len(picked)):
        hue = (i * golden) % 1.0
        value = 0.95 if i % 2 == 0 else 0.7
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return np.asarray(colours, dtype=np.uint8)


PALETTE: np.ndarray = _build_palette()
PALETTE.setflags(write=False)


def class_names(classes: int, names: list[str] | None = None) -> list[str]:
    """The K class names: ``names`` when given (checked), else background, lesion (K = 2) or
    background, class1, ..., class{K-1}."""
    if names is not None:
        return list(names)
    if classes == 2:
        return ["background", "lesion"]
    return ["background"] + [f"class{k}" for k in range(1, classes)]


def check_class_names(names: object, classes: int, source: str) -> list[str]:
    """``names`` as a list of K distinct non-empty strings, or a DataError naming ``source``."""
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise DataError(f"{source}: class_names must be a list of {classes} non-empty names, "
                        f"e.g. [{', '.join(class_names(classes))}]")
    if len(names) != classes:
        raise DataError(f"{source}: class_names lists {len(names)} names but classes is {classes}; "
                        f"give one name per class, background first")
    if len(set(names)) != len(names):
        raise DataError(f"{source}: class_names repeats a name ({names}); each class needs its own")
    if any("/" in n for n in names):
        raise DataError(f"{source}: class names may not contain '/' ({names}); rename the class")
    return list(names)


def parse_label_map(text: str, option: str = "--label-map") -> dict[int, int]:
    """``"0:0,85:1,170:2,255:3"`` -> ``{0: 0, 85: 1, 170: 2, 255: 3}`` (raw value: class)."""
    out: dict[int, int] = {}
    for part in str(text).split(","):
        if not part.strip():
            continue
        raw, sep, cls = part.partition(":")
        try:
            if not sep:
                raise ValueError
            value, k = int(raw.strip()), int(cls.strip())
        except ValueError:
            raise DataError(f"{option} {text!r}: {part.strip()!r} is not RAW:CLASS with whole numbers; "
                            f"write it as e.g. {option} 0:0,85:1,170:2,255:3") from None
        if value in out:
            raise DataError(f"{option} {text!r}: the raw value {value} is mapped twice; map it once")
        out[value] = k
    if not out:
        raise DataError(f"{option} {text!r}: empty; write it as e.g. {option} 0:0,85:1,170:2,255:3")
    return out


def check_label_map(label_map: object, classes: int, source: str) -> dict[int, int]:
    """``label_map`` as {int raw value >= 0: class in 0..K-1}, or a DataError naming ``source``.

    Every class must receive at least one raw value, so that no class is silently left empty.
    """
    if not isinstance(label_map, Mapping) or not label_map:
        raise DataError(f"{source}: label_map must map raw mask values to classes, e.g. "
                        f"{{0: 0, 85: 1, 170: 2, 255: 3}}")
    out: dict[int, int] = {}
    for raw, cls in label_map.items():
        try:
            if isinstance(raw, bool) or isinstance(cls, bool):
                raise ValueError
            value, k = int(raw), int(cls)
            if value != raw or k != cls:  # 1.5 or "a" are not values
                raise ValueError
        except (TypeError, ValueError):
            raise DataError(f"{source}: label_map entry {raw!r}: {cls!r} is not a whole raw value "
                            f"and a class index") from None
        if value < 0:
            raise DataError(f"{source}: label_map raw value {value} is negative; mask values are >= 0")
        if not 0 <= k < classes:
            raise DataError(f"{source}: label_map sends {value} to class {k}, outside 0..{classes - 1} "
                            f"(classes is {classes})")
        out[value] = k
    missing = sorted(set(range(classes)) - set(out.values()))
    if missing:
        raise DataError(f"{source}: label_map gives no raw value to class(es) {missing}; every class "
                        f"0..{classes - 1} needs one (or lower --classes)")
    return out


def _fail(path: Path, why: str) -> DataError:
    return DataError(f"{path}: cannot read mask ({why}); the file is corrupt, truncated or not an "
                     f"image - replace it, or remove it from the folder")


def read_raw_label(path: str | Path, palette_indices: bool = True) -> np.ndarray:
    """The stored values of a mask file, HxW or HxWxC: a palette image's indices (not RGB), or
    with ``palette_indices=False`` its colours (as the binary mask rule reads it)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise _fail(path, "zero-byte file")
    if path.suffix.lower() in TIFF_EXTENSIONS:
        try:
            arr, _ = read_tiff_page(path)
            return np.asarray(arr)
        except DataError:
            raise
        except Exception:  # noqa: BLE001 - Pillow below names the problem
            pass
    try:
        with warnings.catch_warnings(), naming(path):
            warnings.simplefilter("ignore")
            with open_image(path) as img:
                img.load()
                if img.mode in ("P", "PA") and not palette_indices:
                    arr = np.array(img.convert("RGB"))
                elif img.mode in ("P", "L", "1", "I", "I;16", "I;16B", "I;16L", "F"):
                    arr = np.array(img)  # a palette image gives its indices
                elif img.mode == "PA":
                    arr = np.array(img.getchannel(0))
                elif img.mode == "LA":
                    arr = np.array(img.getchannel("L"))
                else:
                    arr = np.array(img.convert("RGB"))
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise _fail(path, str(e) or type(e).__name__) from None
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return arr


def binary_mask(arr: np.ndarray) -> np.ndarray:
    """The binary mask rule (docs/DATA.md) on stored values, HxW -> bool HxW.

    A mask whose maximum is 1 (0/1 masks, 1-bit PNGs) has foreground = value >= 1; otherwise
    foreground = value > half of the full scale: 127.5 for 8-bit, 32767.5 for 16-bit (a 16-bit
    file whose values stay <= 255 is treated as 8-bit). Float masks: > 0.5 (or > half of 255).
    """
    if arr.dtype == bool:
        return arr.copy()
    a = arr.astype(np.float64)
    top = a.max(initial=0)
    if top <= 1:
        return a >= 1 if arr.dtype.kind in "ui" else a > 0.5
    full = 65535.0 if (arr.dtype.itemsize >= 2 and arr.dtype.kind in "ui" and top > 255) else 255.0
    return a > full / 2


def _grey(arr: np.ndarray, path: Path) -> np.ndarray:
    """An index mask must be one channel; RGB with equal channels is that channel."""
    if arr.ndim == 3:
        if arr.shape[-1] == 1 or bool((arr == arr[..., :1]).all()):
            arr = arr[..., 0]
        else:
            raise DataError(f"{path}: a colour mask; a mask of several classes must hold one class index "
                            f"(or one grey value) per pixel - save it as a grey or palette PNG")
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a 2-D mask, got an array of shape {arr.shape}")
    return arr


def _values_text(values: np.ndarray) -> str:
    shown = ", ".join(str(v) for v in values[:MAX_SHOWN].tolist())
    return shown + (f", ... ({len(values)} values)" if len(values) > MAX_SHOWN else "")


def to_indices(arr: np.ndarray, classes: int, label_map: Mapping[int, int] | None, path: str | Path
               ) -> np.ndarray:
    """Stored mask values (HxW) -> uint8 class indices 0..K-1, or a DataError naming ``path``."""
    path = Path(path)
    arr = _grey(np.asarray(arr), path)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise DataError(f"{path}: mask holds non-integer values; class masks need whole class indices")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "uib":
        raise DataError(f"{path}: mask of pixel type {arr.dtype}; expected integer class indices")
    if label_map is None:
        bad = np.unique(arr[(arr < 0) | (arr >= classes)])
        if bad.size:
            found = np.unique(arr)
            suggestion = ",".join(f"{v}:{k}" for k, v in enumerate(found.tolist()))
            hint = (f"; if the masks code the classes as these values, give "
                    f"--label-map {suggestion}" if len(found) <= classes
                    else "; give --label-map RAW:CLASS,... to map the stored values to classes")
            raise DataError(f"{path}: mask values {_values_text(bad)} are outside the class indices "
                            f"0..{classes - 1} (classes={classes}){hint}")
        return arr.astype(np.uint8)
    found = np.unique(arr)
    unmapped = np.array([v for v in found.tolist() if v not in label_map], dtype=np.int64)
    if unmapped.size:
        raise DataError(f"{path}: mask values {_values_text(unmapped)} are not in the label map "
                        f"({', '.join(f'{k}:{v}' for k, v in sorted(label_map.items()))}); add them to "
                        f"--label-map or fix the mask")
    lut_keys = np.array(sorted(label_map), dtype=np.int64)
    lut_vals = np.array([label_map[k] for k in lut_keys.tolist()], dtype=np.uint8)
    return lut_vals[np.searchsorted(lut_keys, arr.astype(np.int64))]


def read_label(path: str | Path, classes: int, label_map: Mapping[int, int] | None = None) -> np.ndarray:
    """A mask as uint8 HxW class indices 0..K-1.

    K > 2 without ``label_map``: the stored values must be 0..K-1; with it, each stored value
    goes to its class and a value it does not list is a DataError. K = 2 without ``label_map``:
    the binary mask rule (:func:`binary_mask`, colour masks by their brightest channel), 0/1.
    """
    path = Path(path)
    binary_rule = classes == 2 and label_map is None
    arr = read_raw_label(path, palette_indices=not binary_rule)
    if binary_rule:
        if arr.ndim == 3:
            c = arr.shape[-1]
            arr = (arr[..., : c - 1] if c in (2, 4) else arr).max(axis=-1)
        if arr.ndim != 2:
            raise DataError(f"{path}: expected a 2-D mask, got an array of shape {arr.shape}")
        return binary_mask(arr).astype(np.uint8)
    return to_indices(arr, classes, label_map, path)


def colourise(labels: np.ndarray) -> np.ndarray:
    """uint8 HxW class indices -> RGB uint8 HxWx3 in the palette's colours."""
    return PALETTE[np.asarray(labels, dtype=np.uint8)]


def label_image(labels: np.ndarray, classes: int):
    """The PIL image :func:`write_label_png` saves: K = 2 0/255 grey ("L"), K > 2 palette ("P")."""
    from PIL import Image

    labels = np.asarray(labels)
    if classes == 2:
        return Image.fromarray(np.where(labels != 0, 255, 0).astype(np.uint8))
    if labels.size and int(labels.max()) >= classes:
        raise ValueError(f"label {int(labels.max())} outside 0..{classes - 1}")
    img = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))  # "L"
    img.putpalette(PALETTE.tobytes())  # "L" -> "P", the values kept as the indices
    return img


def write_label_png(path: str | Path, labels: np.ndarray, classes: int) -> None:
    """Save class indices as a PNG: K = 2 0/255 grey; K > 2 a palette PNG of the indices.

    Callers write into a temp folder published at the end (decseg.io.atomic_dir); a write error
    names ``path``.
    """
    img = label_image(labels, classes)
    with naming(path):
        img.save(path, format="PNG")
