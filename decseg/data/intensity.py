"""Turning stored intensities (8/12/16-bit, signed, float) into the uint8 images the network reads.

The rules (docs/DATA.md, "Intensities"):

- ``unit``: the full scale of the type -> 0..255 (uint8 as is, 16-bit / 257, floats <= 1 times
  255, other floats clipped to 0..255). The rule for 8-bit data; wider data with a small used
  range keep only a few grey levels under it (contrast_warning says so).
- ``percentile`` (LOW, HIGH percentiles, default 0.5, 99.5): a window from the image's own
  percentiles, computed over its finite values.
- ``window`` (LOW, HIGH values, e.g. CT soft tissue -160, 240 HU): a fixed window.
- ``minmax``: the image's finite minimum and maximum.
- ``auto``: ``unit`` for uint8 and bool images, ``percentile`` 0.5-99.5 for every other type.

uint8 and bool images are always read by the ``unit`` rule, whatever the rule says: 8-bit pixels are
already display values (the DEC-Seg protocol is pixels / 255), and a window in the units of a 16-bit
or HU source means nothing for them.

A window (LOW, HIGH) maps LOW -> 0 and HIGH -> 255 linearly, rounds, and clips outside it.
Non-finite values: NaN and -inf -> 0, +inf -> 255; percentiles and min/max ignore them.
One window per array: the channels of an image (and the slices of a volume) share it, so colour
balance and the contrast between slices are kept. An image whose window is empty (a constant image)
becomes all 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from decseg.config import INTENSITY_FORMS, intensity_spec
from decseg.errors import ConfigError

MODES = ("auto", "unit", "percentile", "window", "minmax")
DEFAULT_PERCENTILES = (0.5, 99.5)
# Percentiles and distinct-value counts of large arrays (volumes) use an even sample of this many
# values: the percentiles move by far less than one output grey level.
SAMPLE_VALUES = 2_000_000
# apply() works in float64 on at most this many values at a time (bounded memory for volumes).
CHUNK_VALUES = 4_000_000
# Contrast collapse (contrast_warning): fewer than MIN_LEVELS grey levels out, while the source
# had at least MANY_LEVELS distinct values (and four times the levels kept) ...
MIN_LEVELS = 32
MANY_LEVELS = 64
# ... or more than CLIPPED_SHARE of the pixels saturated to 0/255 that are not the source's own
# minimum/maximum (a window that misses the data; a CT soft-tissue window on a chest slice clips
# air and lungs, 50-70 % of the pixels, on purpose, so the bar is high).
CLIPPED_SHARE = 0.9
# dataset_window: values taken from each sample (evenly spaced; nnU-Net takes 10,000 per case), kept
# as float32 (exact for 16-bit data), so 3,000 training images pool 240 MB at most.
PER_SAMPLE_VALUES = 20_000


@dataclass(frozen=True)
class IntensityRule:
    """How one array's values become 0..255; see the module docstring for each mode."""

    mode: str  # "auto", "unit", "percentile", "window", "minmax"
    low: float | None = None  # percentile: lower percentile; window: lower value
    high: float | None = None  # percentile: upper percentile; window: upper value

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"intensity mode {self.mode!r} is not one of: {', '.join(MODES)}")
        if self.mode in ("percentile", "window") and (self.low is None or self.high is None):
            raise ConfigError(f"intensity mode {self.mode} needs low and high")

    @property
    def spec(self) -> str:
        """The data.intensity string of this rule (intensity_rule(rule.spec) == rule)."""
        if self.mode in ("percentile", "window"):
            return f"{self.mode}:{_num(self.low)},{_num(self.high)}"
        return self.mode

    def to_dict(self, **provenance: Any) -> dict[str, Any]:
        """What dataset.yaml stores under ``intensity:``; ``provenance`` (e.g. chosen_by) is added."""
        low, high = self.low, self.high
        if self.mode == "auto":
            low, high = DEFAULT_PERCENTILES
        return {"mode": self.mode, "low": low, "high": high, **provenance}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IntensityRule":
        """The rule of a dataset.yaml ``intensity:`` mapping (extra provenance keys are ignored)."""
        if not isinstance(d, dict) or "mode" not in d:
            raise ConfigError(f"intensity record {d!r} must be a mapping with a mode ({', '.join(MODES)})")
        mode = str(d["mode"])
        if mode in ("percentile", "window"):
            try:
                return intensity_rule(f"{mode}:{float(d.get('low'))},{float(d.get('high'))}")
            except (TypeError, ValueError):
                raise ConfigError(f"intensity record {d!r}: {mode} needs numbers low < high") from None
        return intensity_rule(mode)

    def window(self, array: np.ndarray) -> tuple[float, float]:
        """The (value -> 0, value -> 255) window this rule gives ``array`` (not for unit)."""
        mode, low, high = self.mode, self.low, self.high
        if mode == "auto":
            mode, (low, high) = "percentile", DEFAULT_PERCENTILES
        if mode == "window":
            return float(low), float(high)
        finite = _finite_sample(array)
        if finite.size == 0:
            return 0.0, 0.0
        if mode == "minmax":
            return float(finite.min()), float(finite.max())
        if mode == "percentile":
            lo, hi = np.percentile(finite, [low, high])
            return float(lo), float(hi)
        raise ConfigError(f"intensity mode {mode} has no window")

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Any numeric array (HxW, HxWxC, or a whole volume) -> uint8 of the same shape."""
        array = np.asarray(array)
        if array.dtype == np.uint8:
            return array
        if array.dtype == bool:
            return array.astype(np.uint8) * 255
        if array.dtype.kind not in "uif":
            raise ConfigError(f"unsupported pixel type {array.dtype}")
        if self.mode == "unit":
            return _full_scale(array)
        lo, hi = self.window(array)
        return _map_window(array, lo, hi)


def _num(v: float | None) -> str:
    text = repr(float(v))  # the shortest text that reads back as the same float
    return text[:-2] if text.endswith(".0") else text


def _finite_sample(array: np.ndarray) -> np.ndarray:
    """The finite values of ``array`` as float64, evenly subsampled to SAMPLE_VALUES at most."""
    flat = array.reshape(-1)
    if flat.size > SAMPLE_VALUES:
        flat = flat[:: math.ceil(flat.size / SAMPLE_VALUES)]
    flat = flat.astype(np.float64)
    return flat[np.isfinite(flat)]


def _map_window(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
    flat = array.reshape(-1)
    if flat.size <= CHUNK_VALUES:
        return _map_chunk(flat, lo, hi).reshape(array.shape)
    out = np.empty(flat.shape, np.uint8)  # a volume: float64 work space one chunk at a time
    for start in range(0, flat.size, CHUNK_VALUES):
        out[start:start + CHUNK_VALUES] = _map_chunk(flat[start:start + CHUNK_VALUES], lo, hi)
    return out.reshape(array.shape)


def _map_chunk(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
    a = array.astype(np.float64)
    if hi > lo:
        out = (a - lo) * 255.0 / (hi - lo)
    else:  # empty window (a constant image): nothing to show
        out = np.zeros_like(a)
        out[a > hi] = 255.0
    out[np.isnan(a)] = 0.0
    np.clip(np.round(out, out=out), 0, 255, out=out)  # +-inf were already +-inf -> clipped
    return out.astype(np.uint8)


def _full_scale(array: np.ndarray) -> np.ndarray:
    """The ``unit`` rule for wider types: the type's full scale -> 255."""
    if array.dtype.kind in "ui":
        # 16-bit data (uint16, or PIL's int32 'I' mode): 65535 -> 255; an int array whose values
        # all fit in 8 bits is taken as 8-bit.
        full = 255.0 if (array.dtype != np.uint16 and array.max(initial=0) <= 255) else 65535.0
        return np.clip(np.round(array.astype(np.float64) * (255.0 / full)), 0, 255).astype(np.uint8)
    a = np.nan_to_num(array.astype(np.float64))
    scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0
    return np.clip(np.round(a * scale), 0, 255).astype(np.uint8)


def intensity_rule(spec: str | IntensityRule) -> IntensityRule:
    """The rule of a data.intensity / --intensity value: "auto", "unit", "minmax", "percentile",
    "percentile:1,99", "window:-160,240". A bad value is a ConfigError naming the accepted forms."""
    if isinstance(spec, IntensityRule):
        return spec
    try:
        mode, low, high = intensity_spec(spec)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return IntensityRule(mode, low, high)


def dataset_window(samples: Iterable[np.ndarray], low_pct: float = 0.5,
                   high_pct: float = 99.5) -> IntensityRule:
    """One fixed window from the ``low_pct`` / ``high_pct`` percentiles over all of ``samples``
    (nnU-Net's CT rule; pass the foreground values of each training case to follow it exactly).

    Each sample contributes an even subsample of at most PER_SAMPLE_VALUES finite values, so the
    pooled set stays small for large training sets. uint8 and bool samples are skipped (they are
    read as pixels / 255 anyway). No usable value is a ConfigError.
    """
    if not 0 <= low_pct < high_pct <= 100:
        raise ConfigError(f"dataset window percentiles {low_pct}, {high_pct}: need 0 <= low < high <= 100")
    pooled = []
    for s in samples:
        s = np.asarray(s)
        if s.dtype == np.uint8 or s.dtype == bool or s.size == 0:
            continue
        flat = s.reshape(-1)
        if flat.size > PER_SAMPLE_VALUES:
            flat = flat[:: math.ceil(flat.size / PER_SAMPLE_VALUES)]
        flat = flat.astype(np.float32)
        pooled.append(flat[np.isfinite(flat)])
    values = np.concatenate(pooled) if pooled else np.zeros(0)
    if values.size == 0:
        raise ConfigError("--intensity dataset: the training images hold no finite non-8-bit values to take "
                          "a window from; use --intensity auto (8-bit images are read as pixels / 255)")
    lo, hi = (float(v) for v in np.percentile(values.astype(np.float64), [low_pct, high_pct]))
    if not hi > lo:
        raise ConfigError(f"--intensity dataset: the {low_pct} and {high_pct} percentiles of the training "
                          f"images are both {lo:g}; give a window with --window LOW,HIGH")
    return IntensityRule("window", lo, hi)


def grey_levels(array: np.ndarray) -> int:
    """Distinct finite values of ``array`` (exact for uint8; from an even sample for large arrays)."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return int(np.count_nonzero(np.bincount(array.reshape(-1), minlength=256)))
    return int(np.unique(_finite_sample(array)).size)


def contrast_warning(source: np.ndarray, result: np.ndarray, path: str | Path) -> str | None:
    """A one-line warning naming ``path`` when ``result`` (uint8) lost the contrast of ``source``:

    - it keeps fewer than MIN_LEVELS (32) grey levels where the source had at least MANY_LEVELS (64)
      distinct values and four times as many as were kept; or
    - more than CLIPPED_SHARE (90 %) of its pixels are saturated to 0 or 255 without being the
      source's own minimum or maximum.

    None otherwise (uint8 sources never warn: they are kept as they are).
    """
    source, result = np.asarray(source), np.asarray(result)
    if source.dtype == np.uint8 or source.dtype == bool or result.size == 0:
        return None
    src_levels, out_levels = grey_levels(source), grey_levels(result)
    finite = _finite_sample(source)
    span = f"{finite.min():g}..{finite.max():g}" if finite.size else "no finite values"
    fix = "use --intensity percentile, or a --window LOW,HIGH that covers the data"
    if out_levels < MIN_LEVELS and src_levels >= max(MANY_LEVELS, 4 * out_levels):
        levels = f"{out_levels} grey level{'' if out_levels == 1 else 's'}"
        return f"{path}: the 8-bit image keeps only {levels} of the source's {src_levels} (values {span}); {fix}"
    if finite.size and source.shape == result.shape:
        lo, hi = float(finite.min()), float(finite.max())  # compared in the stored type: no float copy of a volume
        saturated = ((result == 0) & (source > lo)) | ((result == 255) & (source < hi))
        share = float(saturated.mean())
        if share > CLIPPED_SHARE:
            return (f"{path}: {share:.0%} of the pixels are clipped to black or white (source values "
                    f"{span}); {fix}")
    return None


def describe(rule: IntensityRule) -> str:
    """A short human description of a rule, for messages and reports."""
    if rule.mode == "auto":
        return "auto (uint8 / 255; other types: per-image 0.5-99.5 percentile window)"
    if rule.mode == "percentile":
        return f"per-image {_num(rule.low)}-{_num(rule.high)} percentile window"
    if rule.mode == "window":
        return f"fixed window {_num(rule.low)}..{_num(rule.high)}"
    if rule.mode == "minmax":
        return "per-image min-max window"
    return "unit (full scale of the type -> 255)"


__all__ = ["IntensityRule", "intensity_rule", "dataset_window", "contrast_warning", "grey_levels",
           "describe", "MODES", "INTENSITY_FORMS"]
