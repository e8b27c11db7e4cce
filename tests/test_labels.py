"""decseg.labels: class-index masks read from real files, the palette, the prediction writer."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from decseg.errors import DataError
from decseg.labels import (
    PALETTE, check_class_names, check_label_map, class_names, colourise, parse_label_map, read_label,
    write_label_png,
)


def _indices(h: int = 12, w: int = 10, classes: int = 4) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) % classes).astype(np.uint8)


def test_palette_black_background_and_distinct_colours():
    assert PALETTE.shape == (256, 3) and PALETTE.dtype == np.uint8
    assert PALETTE[0].tolist() == [0, 0, 0]
    assert len({tuple(c) for c in PALETTE.tolist()}) == 256
    assert not PALETTE.flags.writeable


def test_palette_png_roundtrip_gives_indices_not_rgb(tmp_path):
    labels = _indices()
    path = tmp_path / "a.png"
    write_label_png(path, labels, 4)
    with Image.open(path) as img:
        assert img.mode == "P"
        assert img.getpalette()[:12] == PALETTE[:4].reshape(-1).tolist()
        assert np.array_equal(np.array(img), labels)
    assert np.array_equal(read_label(path, 4), labels)


def test_binary_write_is_0_255_grey(tmp_path):
    path = tmp_path / "b.png"
    write_label_png(path, np.array([[0, 1], [1, 0]], np.uint8), 2)
    with Image.open(path) as img:
        assert img.mode == "L"
        assert np.array(img).tolist() == [[0, 255], [255, 0]]
    assert read_label(path, 2).tolist() == [[0, 1], [1, 0]]


def test_grey_16bit_and_tiff_index_masks(tmp_path):
    labels = _indices(classes=5)
    Image.fromarray(labels, mode="L").save(tmp_path / "g.png")
    Image.fromarray(labels.astype(np.uint16)).save(tmp_path / "g16.png")
    tifffile.imwrite(tmp_path / "t.tif", labels.astype(np.uint16))
    for name in ("g.png", "g16.png", "t.tif"):
        got = read_label(tmp_path / name, 5)
        assert got.dtype == np.uint8 and np.array_equal(got, labels), name


def test_grey_coded_masks_need_a_label_map(tmp_path):
    labels = _indices()
    coded = (labels.astype(np.uint16) * 85).astype(np.uint8)
    Image.fromarray(coded).save(tmp_path / "c.png")
    with pytest.raises(DataError) as e:
        read_label(tmp_path / "c.png", 4)
    msg = str(e.value)
    assert str(tmp_path / "c.png") in msg and "85, 170, 255" in msg
    assert "--label-map 0:0,85:1,170:2,255:3" in msg and "\n" not in msg
    lm = parse_label_map("0:0,85:1,170:2,255:3")
    assert np.array_equal(read_label(tmp_path / "c.png", 4, lm), labels)


def test_value_missing_from_the_label_map_names_it(tmp_path):
    Image.fromarray(np.array([[0, 85], [170, 200]], np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(DataError, match=r"m\.png: mask values 200 are not in the label map"):
        read_label(tmp_path / "m.png", 4, {0: 0, 85: 1, 170: 2, 255: 3})


def test_colour_mask_refused_but_grey_rgb_accepted(tmp_path):
    labels = _indices(classes=3)
    Image.fromarray(np.repeat(labels[..., None], 3, -1)).save(tmp_path / "rgb_grey.png")
    assert np.array_equal(read_label(tmp_path / "rgb_grey.png", 3), labels)
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(DataError, match="colour mask"):
        read_label(tmp_path / "colour.png", 3)


def test_corrupt_and_missing_files_are_data_errors(tmp_path):
    (tmp_path / "z.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    for name in ("z.png", "junk.png", "absent.png"):
        with pytest.raises(DataError, match=name):
            read_label(tmp_path / name, 4)


def test_parse_and_check_label_map():
    assert parse_label_map("0:0, 85:1,170:2 ,255:3") == {0: 0, 85: 1, 170: 2, 255: 3}
    for bad in ("0-0", "a:1", "0:0,0:1", ""):
        with pytest.raises(DataError, match="--label-map"):
            parse_label_map(bad)
    assert check_label_map({0: 0, 255: 1}, 2, "x") == {0: 0, 255: 1}
    with pytest.raises(DataError, match="outside 0..2"):
        check_label_map({0: 0, 1: 1, 2: 3}, 3, "dataset.yaml")
    with pytest.raises(DataError, match=r"no raw value to class\(es\) \[2\]"):
        check_label_map({0: 0, 1: 1}, 3, "dataset.yaml")
    with pytest.raises(DataError, match="whole raw value"):
        check_label_map({0.5: 0, 1: 1}, 2, "dataset.yaml")


def test_class_names():
    assert class_names(2) == ["background", "lesion"]
    assert class_names(4) == ["background", "class1", "class2", "class3"]
    assert check_class_names(["bg", "rv", "myo", "lv"], 4, "d.yaml") == ["bg", "rv", "myo", "lv"]
    for bad in (["bg", "rv"], ["bg", "bg", "a", "b"], "bg,rv", ["bg", "", "a", "b"]):
        with pytest.raises(DataError, match="d.yaml"):
            check_class_names(bad, 4, "d.yaml")


def test_colourise_uses_the_palette():
    rgb = colourise(np.array([[0, 1], [2, 3]], np.uint8))
    assert rgb.shape == (2, 2, 3)
    assert rgb[1, 1].tolist() == PALETTE[3].tolist() and rgb[0, 0].tolist() == [0, 0, 0]


def test_binary_rule_reads_palette_masks_by_colour(tmp_path):
    # a binary palette mask whose lesion is index 5 painted white: the binary rule goes by colour
    img = Image.fromarray(np.array([[0, 5], [5, 0]], np.uint8))
    img.putpalette([0, 0, 0] * 5 + [255, 255, 255] + [0, 0, 0] * 250)
    img.save(tmp_path / "p.png")
    assert read_label(tmp_path / "p.png", 2).tolist() == [[0, 1], [1, 0]]
    from decseg.data.imageio import read_mask

    assert read_mask(tmp_path / "p.png").tolist() == [[False, True], [True, False]]
    assert read_label(tmp_path / "p.png", 6).tolist() == [[0, 5], [5, 0]]  # K > 2: the indices
