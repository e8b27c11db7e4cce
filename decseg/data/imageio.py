"""Reading images and masks of any common flavour into plain numpy arrays.

``read_image`` returns uint8 HxWxC (non-uint8 values through an intensity rule,
decseg.data.intensity); ``read_mask`` returns bool HxW. Every failure
(zero-byte, truncated, corrupt, not an image, more pixels than ``decseg.files.max_pixels()``)
raises :class:`DataError` naming the file; the pixel count is checked from the header, before
any decoding, for every format.

Mask rule (documented in docs/DATA.md):
- colour masks are reduced to their brightest channel (alpha ignored);
- a mask whose maximum value is 1 (0/1 masks, 1-bit PNGs) has foreground = value >= 1;
- otherwise foreground = value > half of the full scale: 127.5 for 8-bit, 32767.5 for
  16-bit (but a 16-bit file whose values stay <= 255 is treated as 8-bit).
"""
from __future__ import annotations

import errno
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from decseg.data.intensity import IntensityRule, intensity_rule
from decseg.errors import ConfigError, DataError, environment_error, naming
from decseg.files import max_pixels, open_image, read_tiff_page
from decseg.labels import binary_mask  # the one home of the binary mask rule

# Which files are images at all: decseg.files.IMAGE_EXTENSIONS (all of them are read here).
TIFF_EXTENSIONS = (".tif", ".tiff")
# Read errors that belong to the one file (reported like a bad file; others propagate).
_UNREADABLE = (errno.EACCES, errno.EPERM, errno.EIO)


def _fail(path: Path, why: str) -> DataError:
    return DataError(f"{path}: cannot read image ({why}); the file is corrupt, truncated or not an "
                     f"image - replace it, or remove it from the folder")


def _read_tiff(path: Path, limit: int) -> np.ndarray:
    # tifffile reads what PIL cannot (16-bit RGB, float, multi-sample TIFFs).
    arr, photometric = read_tiff_page(path, limit)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (CxHxW) storage
    if photometric == "SEPARATED" and arr.ndim == 3 and arr.shape[-1] >= 4:
        arr = _cmyk_to_rgb(arr[..., :4])
    if photometric == "MINISWHITE" and arr.ndim == 2:
        arr = (np.iinfo(arr.dtype).max - arr) if arr.dtype.kind == "u" else arr.max() - arr
    return arr


def _cmyk_to_rgb(cmyk: np.ndarray) -> np.ndarray:
    c, m, y, k = (cmyk[..., i].astype(np.float64) / 255.0 for i in range(4))
    rgb = np.stack([(1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k)], axis=-1)
    return np.round(rgb * 255).astype(np.uint8)


def _pil_to_array(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA")
    elif mode == "CMYK":
        img = img.convert("RGB")
    elif mode in ("YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    elif mode.startswith("I;16"):
        return np.array(img).astype(np.uint16)
    arr = np.array(img)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return arr


def _draft(img: Image.Image, min_side: int | None) -> None:
    """Let a large JPEG decode at 1/2, 1/4 or 1/8 scale (DCT scaling) keeping both sides >= min_side.

    Decoding a 12-megapixel ISIC photo in full takes ~1 s; the training views only need S.
    """
    if not min_side or img.format != "JPEG" or img.mode not in ("RGB", "L", "CMYK"):
        return
    ratio = min(img.size) / min_side
    if ratio >= 2:
        img.draft(img.mode, (max(1, int(img.width / ratio)), max(1, int(img.height / ratio))))


def read_raw(path: str | Path, min_side: int | None = None) -> np.ndarray:
    """The stored pixels: HxW or HxWxC, dtype as stored (palette/CMYK already made RGB).

    ``min_side``: a JPEG may come back reduced, but never below this on either side.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise _fail(path, "zero-byte file")
    limit = max_pixels()
    if path.suffix.lower() in TIFF_EXTENSIONS:
        try:
            arr = _read_tiff(path, limit)
        except (DataError, MemoryError):
            raise
        except Exception:  # noqa: BLE001 - fall back to PIL, which reports its own error below
            arr = None
        if arr is not None and arr.size:
            return arr
    try:
        with warnings.catch_warnings(), naming(path):
            warnings.simplefilter("ignore")  # EXIF/ICC warnings are noise here
            with open_image(path, limit) as img:
                _draft(img, min_side)
                img.load()  # decode now so truncated files fail here, not later
                return _pil_to_array(img)
    except (OSError, ValueError, SyntaxError, EOFError, Image.UnidentifiedImageError) as e:
        # PIL's complaints about the content carry no errno; an errno is the machine speaking.
        if isinstance(e, OSError) and e.errno in _UNREADABLE:  # this file: say so, not "corrupt"
            raise DataError(str(environment_error(e))) from None
        if isinstance(e, OSError) and e.errno is not None and environment_error(e) is not None:
            raise  # too many open files, out of memory: not the file's fault
        raise _fail(path, str(e) or type(e).__name__) from None


def image_pixels(path: str | Path, min_side: int | None = None) -> np.ndarray:
    """The stored values of an image as HxWxC (C = 1 or 3, alpha dropped), dtype as stored.

    Alpha is dropped here, before any intensity window, so it never widens one.
    """
    path = Path(path)
    arr = read_raw(path, min_side)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise DataError(f"{path}: expected a 2-D image, got an array of shape {arr.shape}")
    c = arr.shape[-1]
    if c in (2, 4):
        arr = arr[..., : c - 1]  # drop alpha
    elif c > 4:
        raise DataError(f"{path}: {c} channels; expected grey, RGB or RGBA")
    return arr


def to_uint8(pixels: np.ndarray, path: str | Path, intensity: IntensityRule | str | None = None) -> np.ndarray:
    """Stored values -> uint8 by ``intensity`` (default auto: uint8 as is, other types through a
    per-image 0.5-99.5 percentile window; decseg.data.intensity)."""
    rule = intensity_rule("auto" if intensity is None else intensity)
    try:
        return rule.apply(pixels)
    except ConfigError as e:
        raise DataError(f"{path}: {e}") from None


def fit_channels(arr: np.ndarray, channels: int, path: str | Path) -> np.ndarray:
    """uint8 HxWxC (C = 1 or 3) -> HxW x ``channels`` (grey repeated; RGB to luma for 1)."""
    c = arr.shape[-1]
    if c == channels:
        return np.ascontiguousarray(arr)
    if c == 1:
        return np.repeat(arr, channels, axis=-1)
    if channels == 1:  # ITU-R 601 luma, as PIL's convert("L")
        grey = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return np.round(grey).astype(np.uint8)[..., None]
    raise DataError(f"{path}: has {c} channels but {channels} were asked for (data.channels)")


def read_image(path: str | Path, channels: int = 3, min_side: int | None = None,
               intensity: IntensityRule | str | None = None) -> np.ndarray:
    """An image as uint8 HxWxC with C = ``channels`` (grey is repeated, alpha dropped).

    ``min_side``: for callers that shrink the image anyway; a large JPEG may then be decoded
    at a reduced scale whose sides stay >= min_side (the full extent is kept).
    ``intensity``: how non-uint8 values become 8-bit (a rule or a data.intensity string; default
    auto). uint8 images are pixels as stored under every rule.
    """
    path = Path(path)
    return fit_channels(to_uint8(image_pixels(path, min_side), path, intensity), channels, path)


def read_mask(path: str | Path) -> np.ndarray:
    """A binary mask as bool HxW, by the rule in this module's docstring."""
    path = Path(path)
    arr = read_raw(path)
    if arr.ndim == 3:
        c = arr.shape[-1]
        if c in (2, 4):
            arr = arr[..., : c - 1]
        arr = arr.max(axis=-1)
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a 2-D mask, got an array of shape {arr.shape}")
    return binary_mask(arr)


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) from the header when PIL can, without decoding the pixels (over the pixel limit:
    the DataError of :func:`read_raw`)."""
    path = Path(path)
    try:
        with open_image(path, max_pixels()) as img:
            return img.height, img.width
    except DataError:
        raise
    except Exception:  # noqa: BLE001 - fall back to a full read, which names the problem
        a = read_raw(path)
        return a.shape[0], a.shape[1]


def write_mask_png(path: str | Path, mask: np.ndarray) -> None:
    """A bool mask as an 8-bit 0/255 PNG (a write error names ``path``)."""
    with naming(path):
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(path, format="PNG")


def write_image_png(path: str | Path, image: np.ndarray) -> None:
    img = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    with naming(path):
        Image.fromarray(np.ascontiguousarray(img)).save(path, format="PNG")
