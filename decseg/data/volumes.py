"""Reading 3D image and label volumes: NIfTI (nibabel) and NRRD (pynrrd).

``read_volume`` returns a :class:`Volume`: the voxel array as the library gives it (NIfTI
axis order i, j, k; NRRD's axis order, which pynrrd returns Fortran-style like nibabel), the
spacing per array axis in mm, a 4x4 affine mapping voxel indices to RAS+ millimetres (NIfTI's
convention; NRRD space directions and origin are converted from the file's space), and the
orientation codes (e.g. ``RAS``). Every problem (unknown extension, a 4D volume, a corrupt
or truncated file, a label volume that does not fit its image or holds values outside
0..K-1) is one :class:`DataError` naming the file and saying what to do.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from decseg.errors import DataError

VOLUME_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr")
# Label and image affines may differ by float noise (float32 qform/sform, resampling tools);
# a micron in translation and 1e-5 relative are far below any voxel size.
AFFINE_ATOL = 1e-3
AFFINE_RTOL = 1e-5
# NRRD space -> signs that turn its axes into RAS+ (unknown spaces are kept as they are).
_NRRD_SPACE_TO_RAS = {
    "right-anterior-superior": (1, 1, 1), "ras": (1, 1, 1),
    "left-anterior-superior": (-1, 1, 1), "las": (-1, 1, 1),
    "left-posterior-superior": (-1, -1, 1), "lps": (-1, -1, 1),
}


@dataclass(frozen=True)
class Volume:
    """A 3D volume: the array (X, Y, Z as stored), spacing per axis (mm), affine (voxel -> RAS mm)."""

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray
    path: Path
    orientation: str | None = None  # axis codes such as "RAS"; None when the space is unknown

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)


def volume_suffix(path: str | Path) -> str | None:
    """The volume extension of ``path`` (``.nii.gz``, ``.nii``, ``.nrrd``, ``.nhdr``), or None."""
    name = Path(path).name.lower()
    return next((e for e in VOLUME_EXTENSIONS if name.endswith(e)), None)


def is_volume_name(path: str | Path) -> bool:
    return volume_suffix(path) is not None


def volume_stem(path: str | Path) -> str:
    """The file name without its volume extension: ``case_01.nii.gz`` -> ``case_01``."""
    p = Path(path)
    ext = volume_suffix(p)
    return p.name[: len(p.name) - len(ext)] if ext else p.stem


def _unreadable(path: Path, why: str) -> DataError:
    return DataError(f"{path}: cannot read volume ({why}); the file is corrupt, truncated or not a "
                     f"{'NRRD' if volume_suffix(path) in ('.nrrd', '.nhdr') else 'NIfTI'} file - "
                     f"replace it, or remove it from the folder")


def _squeeze_to_3d(array: np.ndarray, path: Path, spacing: list[float], affine: np.ndarray
                   ) -> tuple[np.ndarray, list[float]]:
    """2D -> one slice (X, Y, 1); trailing axes of length 1 are dropped; a true 4D volume is an error."""
    if array.ndim == 2:
        return array[..., None], spacing[:2] + [float(np.linalg.norm(affine[:3, 2])) or 1.0]
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim > 3:
        raise DataError(
            f"{path}: a {array.ndim}D volume of shape {tuple(array.shape)}; decseg slices 3D volumes only. "
            f"Save the frame or channel you want as its own 3D file (e.g. with nibabel: "
            f"img.slicer[..., t]), or, for several channels, one file per channel (nnU-Net's CASE_0000, "
            f"CASE_0001 naming)")
    if array.ndim < 2:
        raise DataError(f"{path}: a {array.ndim}D array of shape {tuple(array.shape)} is not an image volume")
    return array, spacing[:3]


def _read_nifti(path: Path) -> Volume:
    import nibabel

    try:
        img = nibabel.load(str(path))
        array = np.asanyarray(img.dataobj)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - nibabel raises many types for a damaged file
        raise _unreadable(path, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    affine = np.asarray(img.affine, dtype=np.float64)
    zooms = [float(z) for z in img.header.get_zooms()]
    array, spacing = _squeeze_to_3d(array, path, zooms, affine)
    try:
        codes = "".join(nibabel.aff2axcodes(affine))
    except Exception:  # noqa: BLE001 - a singular affine has no orientation
        codes = None
    return Volume(array, tuple(spacing), affine, path, codes)


def _nrrd_geometry(header: dict, ndim: int, path: Path) -> tuple[list[float], np.ndarray, str | None]:
    """Spacing per axis, the RAS affine and the orientation codes from an NRRD header."""
    dirs = header.get("space directions")
    affine = np.eye(4)
    if dirs is not None:
        rows = [None if r is None or not np.all(np.isfinite(np.asarray(r, dtype=float)))
                else np.asarray(r, dtype=np.float64) for r in dirs]
        spatial = [r for r in rows if r is not None]
        if len(spatial) != len(rows):
            raise DataError(f"{path}: an NRRD axis without a space direction (a list or vector axis, "
                            f"kinds {header.get('kinds')}); decseg reads 3D scalar volumes: save each "
                            f"channel or frame as its own 3D file")
        mat = np.stack(spatial, axis=1)  # column i = direction of array axis i
        dim = mat.shape[0]
        affine[:dim, : mat.shape[1]] = mat[:3, :3] if dim >= 3 else mat
        origin = np.asarray(header.get("space origin", np.zeros(dim)), dtype=np.float64)
        affine[: min(dim, 3), 3] = origin[:3]
        spacing = [float(np.linalg.norm(c)) for c in mat.T]
        space = str(header.get("space", "")).lower()
        signs = _NRRD_SPACE_TO_RAS.get(space)
        if signs is None:
            return spacing, affine, None
        affine = np.diag([*signs, 1.0]) @ affine
    else:
        spacing = [float(s) if np.isfinite(s) else 1.0 for s in header.get("spacings", [1.0] * ndim)]
        affine[:3, :3] = np.diag((spacing + [1.0] * 3)[:3])
        return spacing, affine, None
    import nibabel

    try:
        codes = "".join(nibabel.aff2axcodes(affine))
    except Exception:  # noqa: BLE001 - singular directions
        codes = None
    return spacing, affine, codes


def _read_nrrd(path: Path) -> Volume:
    import nrrd

    try:
        array, header = nrrd.read(str(path))
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - pynrrd raises NRRDError, OSError, ValueError, zlib errors
        raise _unreadable(path, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    spacing, affine, codes = _nrrd_geometry(header, array.ndim, path)
    array, spacing = _squeeze_to_3d(array, path, spacing, affine)
    return Volume(array, tuple(spacing), affine, path, codes)


def read_volume(path: str | Path) -> Volume:
    """A NIfTI (.nii, .nii.gz) or NRRD (.nrrd, .nhdr) volume; any problem is a DataError naming it."""
    path = Path(path)
    ext = volume_suffix(path)
    if ext is None:
        raise DataError(f"{path}: not a volume file (supported: {', '.join(VOLUME_EXTENSIONS)}); convert it "
                        f"to NIfTI or NRRD, or remove it from the folder")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise _unreadable(path, "zero-byte file")
    vol = _read_nifti(path) if ext in (".nii", ".nii.gz") else _read_nrrd(path)
    if vol.array.dtype.kind not in "uifb":
        raise DataError(f"{path}: voxel type {vol.array.dtype} is not a number type; save it as an "
                        f"integer or float volume")
    return vol


def check_same_grid(label: Volume, image: Volume) -> None:
    """A label volume must have its image's shape and affine (up to float noise)."""
    if label.shape != image.shape:
        raise DataError(f"{label.path}: label volume has shape {label.shape} but its image {image.path.name} "
                        f"has {image.shape}; labels must be on the image's voxel grid (resample the label "
                        f"with nearest neighbour)")
    if not np.allclose(label.affine, image.affine, rtol=AFFINE_RTOL, atol=AFFINE_ATOL):
        diff = float(np.max(np.abs(label.affine - image.affine)))
        raise DataError(f"{label.path}: label affine differs from its image {image.path.name} by up to "
                        f"{diff:.4g} (orientation, spacing or origin); labels must be on the image's voxel "
                        f"grid: resample the label, or copy the image's header into it")


def label_values(label: Volume) -> np.ndarray:
    """The label voxels as integers (int64); non-integer or negative values are a DataError."""
    a = label.array
    if a.dtype.kind == "b":
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise DataError(f"{label.path}: label volume holds non-integer values (e.g. "
                            f"{a[np.isfinite(a) & (a != np.round(a))][:3].tolist() or 'nan/inf'}); labels must "
                            f"be class indices 0..K-1 (is this an image instead of its label?)")
        a = np.round(a)
    values = a.astype(np.int64)
    if values.size and values.min() < 0:
        raise DataError(f"{label.path}: label volume holds negative values (min {int(values.min())}); labels "
                        f"must be class indices 0..K-1")
    return values


def check_label_range(values: np.ndarray, classes: int, path: Path, fix: str | None = None) -> None:
    """Every label value must be a class index 0..classes-1."""
    top = int(values.max(initial=0))
    if top >= classes:
        bad = sorted(int(v) for v in np.unique(values[values >= classes]))[:8]
        fix = fix or f"pass --classes {top + 1}, or map the values to class indices (--label-map)"
        raise DataError(f"{path}: label values {bad} are outside 0..{classes - 1} ({classes} classes); {fix}")


def read_label_volume(path: str | Path, image: Volume, classes: int | None = None) -> tuple[Volume, np.ndarray]:
    """The label volume of ``image``: (volume, int64 class indices), checked against the image's grid
    and, when ``classes`` is given, the range 0..classes-1."""
    label = read_volume(path)
    check_same_grid(label, image)
    values = label_values(label)
    if classes is not None:
        check_label_range(values, classes, label.path)
    return label, values


def slice_along(array: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Slice ``k`` of ``array`` along ``axis``: the other axes in their order (no transpose, no resize)."""
    return np.take(array, k, axis=axis)


__all__ = ["Volume", "VOLUME_EXTENSIONS", "read_volume", "read_label_volume", "check_same_grid",
           "label_values", "check_label_range", "volume_suffix", "volume_stem", "is_volume_name",
           "slice_along"]
