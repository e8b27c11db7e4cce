"""decseg.data.volumes on real NIfTI (nibabel) and NRRD (pynrrd) files."""
from __future__ import annotations

import gzip
from pathlib import Path

import nibabel
import nrrd
import numpy as np
import pytest

from decseg.data.volumes import (check_label_range, read_label_volume, read_volume, slice_along, volume_stem,
                                 volume_suffix)
from decseg.errors import DataError

AFFINE = np.array([[-1.5, 0, 0, 10.0], [0, 1.5, 0, -20.0], [0, 0, 5.0, 3.0], [0, 0, 0, 1]])


def nifti(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nibabel.save(nibabel.Nifti1Image(array, affine), str(path))
    return path


def test_nifti_array_spacing_affine(tmp_path):
    a = np.arange(32 * 32 * 6, dtype=np.int16).reshape(32, 32, 6)
    for name in ("v.nii.gz", "v.nii"):
        vol = read_volume(nifti(tmp_path / name, a))
        assert vol.shape == (32, 32, 6) and vol.array.dtype == np.int16
        assert np.array_equal(vol.array, a)
        assert vol.spacing == pytest.approx((1.5, 1.5, 5.0))
        assert np.allclose(vol.affine, AFFINE)
        assert vol.orientation == "LAS"


def test_nrrd_lps_becomes_ras(tmp_path):
    a = np.random.default_rng(0).random((32, 30, 6)).astype(np.float32)
    header = {"space": "left-posterior-superior", "space directions": np.diag([0.7, 0.8, 3.0]),
              "space origin": np.array([1.0, 2.0, 3.0])}
    nrrd.write(str(tmp_path / "v.nrrd"), a, header)
    vol = read_volume(tmp_path / "v.nrrd")
    assert vol.shape == (32, 30, 6) and np.array_equal(vol.array, a)
    assert vol.spacing == pytest.approx((0.7, 0.8, 3.0))
    # LPS -> RAS flips the first two world axes (directions and origin)
    assert np.allclose(vol.affine, [[-0.7, 0, 0, -1], [0, -0.8, 0, -2], [0, 0, 3, 3], [0, 0, 0, 1]])
    assert vol.orientation == "LPS"
    # a detached header (.nhdr) reads the same
    nrrd.write(str(tmp_path / "d.nhdr"), a, header, detached_header=True)
    assert np.array_equal(read_volume(tmp_path / "d.nhdr").array, a)


def test_names():
    assert volume_suffix("a/b.NII.GZ") == ".nii.gz" and volume_suffix("x.png") is None
    assert volume_stem("case_01.nii.gz") == "case_01" and volume_stem("p.nrrd") == "p"


def test_trailing_unit_axis_dropped_and_4d_refused(tmp_path):
    a = np.zeros((8, 8, 4, 1), np.uint8)
    assert read_volume(nifti(tmp_path / "one.nii.gz", a)).shape == (8, 8, 4)
    with pytest.raises(DataError, match=r"cine\.nii\.gz: a 4D volume of shape \(8, 8, 4, 3\).*3D file"):
        read_volume(nifti(tmp_path / "cine.nii.gz", np.zeros((8, 8, 4, 3), np.uint8)))


def test_corrupt_truncated_unknown(tmp_path):
    good = nifti(tmp_path / "g.nii.gz", np.random.default_rng(1).random((32, 32, 6)).astype(np.float32))
    data = good.read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.nii\.gz: cannot read volume.*truncated"):
        read_volume(tmp_path / "cut.nii.gz")
    (tmp_path / "junk.nii").write_bytes(b"not a nifti at all" * 30)
    with pytest.raises(DataError, match=r"junk\.nii: cannot read volume"):
        read_volume(tmp_path / "junk.nii")
    (tmp_path / "empty.nrrd").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.nrrd: cannot read volume \(zero-byte"):
        read_volume(tmp_path / "empty.nrrd")
    nrrd.write(str(tmp_path / "n.nrrd"), np.ones((16, 16, 4), np.int16))
    raw = (tmp_path / "n.nrrd").read_bytes()
    (tmp_path / "n.nrrd").write_bytes(raw[: len(raw) - 40])
    with pytest.raises(DataError, match=r"n\.nrrd: cannot read volume"):
        read_volume(tmp_path / "n.nrrd")
    (tmp_path / "v.mha").write_bytes(gzip.compress(b"x"))
    with pytest.raises(DataError, match=r"v\.mha: not a volume file .*\.nii\.gz"):
        read_volume(tmp_path / "v.mha")


def test_label_checks(tmp_path):
    img = read_volume(nifti(tmp_path / "i.nii.gz", np.zeros((32, 32, 6), np.int16)))
    lab = np.zeros((32, 32, 6), np.uint8)
    lab[4:9, 4:9, 2] = 3
    label, values = read_label_volume(nifti(tmp_path / "ok.nii.gz", lab, AFFINE + 2e-5), img, classes=4)
    assert values.dtype == np.int64 and values.max() == 3  # float noise in the affine is accepted
    with pytest.raises(DataError, match=r"ok\.nii\.gz: label values \[3\] are outside 0\.\.2"):
        read_label_volume(tmp_path / "ok.nii.gz", img, classes=3)
    with pytest.raises(DataError, match=r"shape\.nii\.gz: label volume has shape \(32, 32, 5\) but its image"):
        read_label_volume(nifti(tmp_path / "shape.nii.gz", lab[..., :5]), img)
    moved = AFFINE.copy()
    moved[0, 3] += 1.5
    with pytest.raises(DataError, match=r"moved\.nii\.gz: label affine differs .* by up to 1\.5"):
        read_label_volume(nifti(tmp_path / "moved.nii.gz", lab, moved), img)
    with pytest.raises(DataError, match=r"frac\.nii\.gz: label volume holds non-integer values"):
        read_label_volume(nifti(tmp_path / "frac.nii.gz", lab.astype(np.float32) * 0.5), img)
    with pytest.raises(DataError, match=r"neg\.nii\.gz: label volume holds negative values"):
        read_label_volume(nifti(tmp_path / "neg.nii.gz", -lab.astype(np.int16)), img)
    with pytest.raises(DataError, match="--label-map"):
        check_label_range(np.array([0, 7]), 2, tmp_path / "x.nii.gz")


def test_slice_keeps_in_plane_order():
    a = np.arange(4 * 5 * 3).reshape(4, 5, 3)
    assert np.array_equal(slice_along(a, 1, 2), a[:, :, 1])
    assert np.array_equal(slice_along(a, 2, 0), a[2])
