"""decseg.files: the one image-extension list and the stem -> file index, on real files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decseg import files
from decseg.data import datasets, imageio
from decseg.errors import DataError
from decseg.files import IMAGE_EXTENSIONS, index_by_stem
from decseg.metrics import evaluate, folders, readers


def _mask(h: int = 12, w: int = 16) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[3:9, 4:12] = 255
    return m


def _write(path: Path, arr: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = _mask() if arr is None else arr
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, arr)
    else:
        # Lossless where the format allows it; a JPEG's ringing stays far from the thresholds.
        options = {".webp": {"lossless": True}, ".jpg": {"quality": 95}, ".jpeg": {"quality": 95}}
        Image.fromarray(arr).save(path, **options.get(path.suffix, {}))
    return path


def test_index_by_stem_lists_images_and_passes_over_hidden_files_and_clutter(tmp_path):
    _write(tmp_path / "b.jpg")
    _write(tmp_path / "a.png")
    _write(tmp_path / ".hidden.png")  # a macOS "._a.png" resource fork looks like this
    (tmp_path / ".DS_Store").write_bytes(b"\0junk")
    (tmp_path / "Thumbs.db").write_bytes(b"junk")
    (tmp_path / "sub.png").mkdir()  # a folder, whatever its name
    skipped: list[str] = []
    index = index_by_stem(tmp_path, skipped=skipped)
    assert index == {"a": tmp_path / "a.png", "b": tmp_path / "b.jpg"}
    assert list(index) == ["a", "b"]  # sorted by name
    assert sorted(Path(p).name for p in skipped) == [".DS_Store", ".hidden.png", "Thumbs.db"]


def test_two_files_sharing_a_stem_are_a_data_error_naming_both(tmp_path):
    _write(tmp_path / "case0.png")
    _write(tmp_path / "case0.jpg")
    with pytest.raises(DataError) as e:
        index_by_stem(tmp_path, "masks", fix="rename one of them")
    msg = str(e.value)
    assert str(tmp_path) in msg and "case0.jpg" in msg and "case0.png" in msg
    assert "two masks share the name 'case0'" in msg and msg.endswith("rename one of them")


def test_a_file_that_is_not_an_image_is_an_error_unless_not_strict(tmp_path):
    _write(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes\.txt: not an image file .*move it out of"):
        index_by_stem(tmp_path)
    skipped: list[str] = []
    assert list(index_by_stem(tmp_path, strict=False, skipped=skipped)) == ["a"]
    assert skipped == [str(tmp_path / "notes.txt")]
    assert list(index_by_stem(tmp_path, strict=False)) == ["a"]
    with pytest.raises(DataError, match="folder not found"):
        index_by_stem(tmp_path / "nowhere")


def test_named_paths_keep_their_order_and_name_both_files_of_a_stem(tmp_path):
    a, b = _write(tmp_path / "x" / "a.png"), _write(tmp_path / "y" / "a.png")
    c = _write(tmp_path / "x" / ".c.png")  # named explicitly: not passed over
    assert index_by_stem(None, paths=[c, a]) == {".c": c, "a": a}
    with pytest.raises(DataError) as e:
        index_by_stem(None, paths=[a, b])
    assert str(a) in str(e.value) and str(b) in str(e.value)
    with pytest.raises(DataError, match="file not found"):
        index_by_stem(None, paths=[tmp_path / "missing.png"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not an image file"):
        index_by_stem(None, paths=[tmp_path / "notes.txt"])


def test_the_data_layer_and_the_evaluator_use_the_one_extension_list():
    assert folders.IMAGE_EXTENSIONS is files.IMAGE_EXTENSIONS  # the evaluator pairs files there
    assert datasets.IMAGE_EXTENSIONS is files.IMAGE_EXTENSIONS
    assert not hasattr(readers, "IMAGE_EXTS") and not hasattr(imageio, "IMAGE_EXTENSIONS")
    # Everything the evaluator read before is still in it.
    assert {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"} <= set(IMAGE_EXTENSIONS)


@pytest.mark.parametrize("ext", IMAGE_EXTENSIONS)
def test_both_readers_decode_a_real_file_of_every_listed_extension(tmp_path, ext):
    path = _write(tmp_path / f"m{ext}")
    expected = _mask() > 0
    # Data layer: the mask rule on colours.
    assert np.array_equal(imageio.read_mask(path), expected)
    # Evaluator: MATLAB imread semantics. A GIF is always a palette image, whose indices
    # (not colours) the toolbox reads, with a warning saying so.
    gt, notes = readers.read_gt(path)
    pred, _ = readers.read_prediction(path)
    assert gt.shape[:2] == pred.shape[:2] == expected.shape
    if ext == ".gif":
        assert any("palette" in n for n in notes)
    else:
        assert not notes
        assert np.array_equal(readers.gt_to_mask(gt), expected)


def test_evaluator_reads_a_folder_of_every_listed_extension(tmp_path):
    exts = [e for e in IMAGE_EXTENSIONS if e != ".gif"]  # GIF: palette indices (see above)
    for i, ext in enumerate(exts):
        _write(tmp_path / "gt" / f"{i}{ext}")
        _write(tmp_path / "pred" / f"{i}.png")
    res = evaluate.evaluate_folder(tmp_path / "pred", tmp_path / "gt", workers=1)
    assert res["n_images"] == len(exts) and res["dice@0.5"] == 1.0


def test_16_bit_netpbm_files_are_read_as_matlab_would_or_refused(tmp_path):
    grey = (np.arange(12 * 16).reshape(12, 16) * 300).astype(">u2")  # PGM stores big-endian
    pgm = tmp_path / "g.pgm"
    pgm.write_bytes(b"P5\n# a comment\n16 12\n65535\n" + grey.tobytes())
    arr, _ = readers.read_gt(pgm)
    assert arr.dtype == np.uint16 and np.array_equal(arr, grey.astype(np.uint16))
    ppm = tmp_path / "c.ppm"
    ppm.write_bytes(b"P6\n16 12\n65535\n" + np.repeat(grey[..., None], 3, axis=-1).tobytes())
    with pytest.raises(DataError, match="16-bit colour PPM"):
        readers.read_prediction(ppm)
