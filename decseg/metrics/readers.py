"""Reading masks and prediction maps the way MATLAB's ``imread`` hands them to the toolbox.

``imread`` returns: logical for 1-bit images, the raw integer class otherwise (uint8 or
uint16, no rescaling), colour as HxWx3 (alpha dropped), and for palette images the
palette *indices*. We keep those semantics so that the toolbox's ``rgb2gray`` and
``> 128`` see the same numbers; surprising cases produce a warning. An image with more pixels
than ``decseg.files.max_pixels()`` is refused from its header, before decoding, as in the data
layer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from decseg.errors import DataError
from decseg.files import max_pixels, open_image, read_tiff_page
from decseg.metrics.matlab import rgb2gray


def _png_bit_depth(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR chunk, or None for other files."""
    with open(path, "rb") as f:
        head = f.read(26)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or len(head) < 26:
        return None
    return head[24], head[25]


def _pnm_maxval(path: Path) -> tuple[bytes, int] | None:
    """(magic, maxval) from a PPM/PGM header (``P2``, ``P3``, ``P5``, ``P6``), or None for other files."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:2] not in (b"P2", b"P3", b"P5", b"P6"):
        return None
    words = b" ".join(line.split(b"#")[0] for line in head[2:].splitlines()).split()
    return (head[:2], int(words[2])) if len(words) >= 3 and words[2].isdigit() else None


def imread(path: str | Path) -> tuple[np.ndarray, bool]:
    """(array, is_palette) of an image file as MATLAB's one-output ``imread`` returns it."""
    path = Path(path)
    limit = max_pixels()
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            arr = np.asarray(read_tiff_page(path, limit)[0])  # the first page, as imread
            if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (1, 3, 4):
                arr = np.moveaxis(arr, 0, 2)  # planar (channels-first) TIFF -> HxWxC
            return arr, False
        depth = _png_bit_depth(path)
        if depth is not None and depth[0] == 16 and depth[1] in (2, 4, 6):
            # Pillow silently reduces 16-bit colour/alpha PNGs to 8 bits; MATLAB would not.
            raise DataError(f"{path}: 16-bit colour or grey+alpha PNGs are not supported; "
                            f"save it as 8-bit, or as 16-bit greyscale without alpha")
        pnm = _pnm_maxval(path)
        if pnm is not None and pnm[0] in (b"P3", b"P6") and pnm[1] > 255:
            # Pillow reduces 16-bit PPMs to 8 bits as well.
            raise DataError(f"{path}: 16-bit colour PPMs are not supported; save it as 8-bit, "
                            f"or as a 16-bit greyscale PGM or PNG")
        with open_image(path, limit) as img:  # the pixel limit is checked before decoding
            img.load()
            mode = img.mode
            if mode == "P" or mode == "PA":
                return np.asarray(img.getchannel(0) if mode == "PA" else img), True
            if mode in ("RGBA", "RGBX"):
                img = img.convert("RGB")
            elif mode == "LA":
                img = img.getchannel("L")
            elif mode not in ("1", "L", "RGB", "I;16", "I;16B", "I;16L", "I", "F"):
                raise DataError(f"{path}: unsupported image mode {mode!r}; "
                                f"save it as greyscale or RGB PNG")
            arr = np.asarray(img)
            if mode == "I" and img.format in ("PNG", "PPM"):  # 16-bit grey PGM (and PNG on older Pillow)
                arr = arr.astype(np.uint16)
            elif arr.dtype.byteorder == ">":
                arr = arr.astype(arr.dtype.newbyteorder("="))
            return arr, False
    except (DataError, MemoryError):  # out of memory is the machine's fault, not the file's
        raise
    except Exception as e:  # unreadable, truncated or not an image
        raise DataError(f"{path}: cannot read image ({type(e).__name__}: {e}); "
                        f"replace or remove the file") from e


def gt_to_mask(gt: np.ndarray) -> np.ndarray:
    """The toolbox's GT rule: logical stays; colour -> rgb2gray; then foreground = value > 128.

    A 16-bit GT is compared raw (``> 128`` on 0..65535), because the toolbox applies
    ``> 128`` to whatever class ``imread`` returned, without ``im2uint8``.
    """
    if gt.ndim == 3:
        if gt.dtype == np.bool_:
            return gt[..., 0].copy()
        if gt.shape[2] >= 3:
            gt = rgb2gray(gt[..., :3])
        else:
            gt = gt[..., 0]
    if gt.ndim != 2:
        raise ValueError(f"GT must be 2-D or HxWxC, got shape {gt.shape}")
    if gt.dtype == np.bool_:
        return gt.copy()
    return gt > 128


def prediction_channel(pred: np.ndarray) -> np.ndarray:
    """The toolbox uses the first channel only (no grey conversion)."""
    if pred.ndim == 3:
        pred = pred[..., 0]
    if pred.ndim != 2:
        raise ValueError(f"prediction must be 2-D or HxWxC, got shape {pred.shape}")
    if np.issubdtype(pred.dtype, np.integer) and pred.dtype not in (np.uint8, np.uint16) and pred.size:
        # Integer arrays from Python code: take the smallest image class that holds them.
        lo, hi = int(pred.min()), int(pred.max())
        if lo >= 0 and hi <= 65535:
            pred = pred.astype(np.uint8 if hi <= 255 else np.uint16)
    if pred.dtype not in (np.bool_, np.uint8, np.uint16) and not np.issubdtype(pred.dtype, np.floating):
        raise ValueError(f"prediction dtype {pred.dtype} is not uint8, uint16, logical or float")
    return np.ascontiguousarray(pred)


def read_gt(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """(raw GT array for :func:`gt_to_mask`, warnings) of a GT file."""
    path = Path(path)
    arr, palette = imread(path)
    notes = []
    if palette:
        notes.append(f"{path.name}: palette image; like MATLAB's imread the toolbox reads its "
                     f"palette indices, not its colours (foreground = index > 128)")
    return arr, notes


def read_prediction(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """(first channel of the prediction, warnings) of a prediction file."""
    path = Path(path)
    arr, palette = imread(path)
    notes = []
    if palette:
        notes.append(f"{path.name}: palette prediction; its indices are used, as MATLAB would")
    try:
        return prediction_channel(arr), notes
    except ValueError as e:
        raise DataError(f"{path}: {e}; save predictions as 8-bit greyscale PNG") from e
