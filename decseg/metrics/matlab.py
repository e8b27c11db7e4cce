"""MATLAB behaviours the polyp evaluation toolbox relies on, reproduced bit for bit in numpy.

Each function names the MATLAB function it stands for. They are hand-written because the
Python libraries that look similar round, pad, normalise or step differently (see the notes
on each), and the toolbox's numbers depend on those details.
"""
from __future__ import annotations

import numpy as np

# MATLAB's ``eps`` (2^-52): the toolbox adds it to denominators.
EPS = float(np.finfo(np.float64).eps)

# rgb2gray weights: the first row of inv([1 .956 .621; 1 -.272 -.647; 1 -1.106 1.703]).
RGB2GRAY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)


def round_half_away(x: np.ndarray) -> np.ndarray:
    """MATLAB ``round``: halves go away from zero (numpy's ``round`` goes to even).

    Written with floor and the exact fractional part, because ``floor(x + 0.5)`` can round
    up values just below a half (x + 0.5 is itself rounded).
    """
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    whole = np.floor(a)
    up = (a - whole) >= 0.5  # a - floor(a) is exact for doubles
    return np.copysign(whole + up, x)


def to_integer_class(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """MATLAB's cast of doubles to an integer class: round half away, then saturate."""
    info = np.iinfo(dtype)
    return np.clip(round_half_away(x), info.min, info.max).astype(dtype)


def rgb2gray(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` of an integer HxWx3 image: weighted sum, rounded back to its class."""
    r, g, b = (rgb[..., k].astype(np.float64) for k in range(3))
    grey = r * RGB2GRAY_WEIGHTS[0] + g * RGB2GRAY_WEIGHTS[1] + b * RGB2GRAY_WEIGHTS[2]
    if np.issubdtype(rgb.dtype, np.integer):
        return to_integer_class(grey, rgb.dtype)
    return grey


def im2double(x: np.ndarray) -> np.ndarray:
    """MATLAB ``im2double``: uint8 / 255, uint16 / 65535, logical -> 0/1, floats unchanged."""
    if x.dtype == np.bool_:
        return x.astype(np.float64)
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0
    if x.dtype == np.uint16:
        return x.astype(np.float64) / 65535.0
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float64)
    raise TypeError(f"im2double: unsupported dtype {x.dtype}")


def mapminmax01(x: np.ndarray) -> np.ndarray:
    """MATLAB ``mapminmax(x, 0, 1)`` applied to the whole image as one row.

    MATLAB computes the gain as a reciprocal and then multiplies, so the maximum maps to
    (max - min) * (1 / (max - min)), which for many pairs is 1 - 2^-53 rather than 1.
    A constant row gets gain 1 and offset ymin = 0, i.e. it is returned unchanged.
    """
    x = np.asarray(x, dtype=np.float64)
    xmin, xmax = x.min(), x.max()
    xrange = xmax - xmin
    if xrange == 0 or not np.isfinite(xrange):
        return x.copy()
    gain = 1.0 / xrange  # (ymax - ymin) / xrange with ymax - ymin = 1
    return (x - xmin) * gain + 0.0


def toolbox_thresholds() -> np.ndarray:
    """The 256 thresholds of MATLAB's ``1:-1/255:0``, in that order (1 first).

    MATLAB's colon builds the first half forward from the start and the second half
    backward from the end, each as ``base + k*step`` with the step rounded once. This is
    neither ``np.linspace(1, 0, 256)`` nor ``1 - k/255``.
    """
    step = -1.0 / 255.0
    first = np.array([1.0 + k * step for k in range(128)])
    second = np.array([m * (1.0 / 255.0) for m in range(127, -1, -1)])
    return np.concatenate([first, second])


# ---------------------------------------------------------------------------------------
# imresize
# ---------------------------------------------------------------------------------------
# Hand-written: MATLAB's default imresize (bicubic a = -0.5, antialiasing when shrinking,
# mirrored borders, smaller-scale dimension first, rounding after each 1-D pass for
# integer images) is matched by neither OpenCV, PIL nor skimage; OpenCV's cubic resize
# moves polyp metrics by about 3e-3.

_CUBIC_WIDTH = 4.0


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a*b rounded, its exact rounding error): Dekker's product with Veltkamp splitting."""
    def split(v):
        c = 134217729.0 * v  # 2^27 + 1
        hi = c - (c - v)
        return hi, v - hi
    p = a * b
    ah, al = split(a)
    bh, bl = split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _cube(a: np.ndarray) -> np.ndarray:
    """``a.^3`` correctly rounded, as MATLAB's pow gives it (``0.3^3 ~= 0.3*0.3*0.3`` there).

    Hand-written because numpy's ``a ** 3`` runs CPU-dispatched SIMD code (AVX-512 here)
    that is one ulp off for ~5% of inputs: that flips rounding ties of the uint8/uint16
    output (exact .5 sums are common at scales like 1.25) and makes results depend on the
    machine. a^3 = s*a + s_err*a with a^2 = s + s_err exact, summed in double-double.
    """
    a = np.asarray(a, dtype=np.float64)
    s, s_err = _two_product(a, a)
    h, h_err = _two_product(s, a)
    return h + (h_err + s_err * a)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel with a = -0.5, written term by term as MATLAB's ``cubic``."""
    absx = np.abs(x)
    absx2 = absx * absx  # exact square, as absx.^2 is
    absx3 = _cube(absx)
    near = (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((absx > 1) & (absx <= 2))
    return near + far


def resize_contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB imresize's ``contributions``: (weights, 0-based source indices), out_len x P."""
    kernel_width = _CUBIC_WIDTH
    if scale < 1:  # antialiasing: widen and flatten the kernel
        def kernel(d):
            return scale * _cubic(scale * d)
        kernel_width = kernel_width / scale
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # 1-based source coordinate
    left = np.floor(u - kernel_width / 2)
    taps = int(np.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based, may be out of range
    weights = kernel(u[:, None] - indices)
    # Row sums taken tap by tap, left to right, as a plain loop would.
    total = weights[:, 0].copy()
    for k in range(1, taps):
        total = total + weights[:, k]
    weights = weights / total[:, None]
    # Out-of-range taps are mirrored: aux = [1:in_len, in_len:-1:1].
    aux = np.concatenate([np.arange(1, in_len + 1), np.arange(in_len, 0, -1)])
    indices = aux[np.mod(indices.astype(np.int64) - 1, len(aux))]
    keep = np.any(weights != 0, axis=0)  # drop all-zero tap columns, as MATLAB does
    return weights[:, keep], indices[:, keep] - 1


def _resize_along(a: np.ndarray, axis: int, weights: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """One 1-D pass: output i = sum_k weights[i, k] * a[indices[i, k]] along ``axis``."""
    src = np.moveaxis(a.astype(np.float64), axis, 0)
    out = weights[:, 0, None] * src[indices[:, 0]]
    for k in range(1, weights.shape[1]):  # accumulate tap by tap, in order
        out = out + weights[:, k, None] * src[indices[:, k]]
    out = np.moveaxis(out, 0, axis)
    if np.issubdtype(a.dtype, np.integer):
        return to_integer_class(out, a.dtype)  # integer images round and clip after each pass
    return out


def imresize(a: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """MATLAB ``imresize(A, [M N])`` with its defaults (bicubic, antialiasing) for a 2-D image.

    uint8/uint16 inputs stay in their class; logical inputs are resized as uint8 0/255 and
    thresholded at > 128 (our reading of MATLAB's logical handling; unverified against MATLAB).
    """
    if a.ndim != 2:
        raise ValueError("imresize: expected a 2-D image")
    if a.dtype == np.bool_:
        return imresize(a.astype(np.uint8) * np.uint8(255), out_shape) > 128
    scale = (out_shape[0] / a.shape[0], out_shape[1] / a.shape[1])
    # The dimension with the smaller scale goes first; a tie keeps rows first (stable sort).
    order = sorted(range(2), key=lambda d: scale[d])
    out = a
    for dim in order:
        w, idx = resize_contributions(a.shape[dim], out_shape[dim], scale[dim])
        out = _resize_along(out, dim, w, idx)
    return out
