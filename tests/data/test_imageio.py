"""read_image / read_mask on real files of every flavour, and on broken files."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from decseg.data.imageio import read_image, read_mask
from decseg.errors import DataError

sys.path.insert(0, str(Path(__file__).parent))
from helpers_data import disk_mask, rgb, save  # noqa: E402


def test_rgb_png_roundtrip_and_unicode_name(tmp_path):
    a = rgb()
    p = save(tmp_path / "polyp ü 1.png", a)
    out = read_image(p, 3)
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    assert np.array_equal(out, a)


def test_grey_is_repeated_and_rgb_to_one_channel(tmp_path):
    g = rgb()[..., 0]
    p = save(tmp_path / "g.png", g)
    out = read_image(p, 3)
    assert out.shape == (24, 32, 3) and all(np.array_equal(out[..., c], g) for c in range(3))
    one = read_image(save(tmp_path / "c.png", rgb()), 1)
    assert one.shape == (24, 32, 1)
    expected = np.array(Image.open(tmp_path / "c.png").convert("L"))
    assert np.abs(one[..., 0].astype(int) - expected).max() <= 1


def test_rgba_drops_alpha(tmp_path):
    a = np.dstack([rgb(), np.full((24, 32), 7, np.uint8)])
    out = read_image(save(tmp_path / "a.png", a), 3)
    assert np.array_equal(out, a[..., :3])


def test_palette_image_and_mask(tmp_path):
    idx = disk_mask().astype(np.uint8)
    img = Image.fromarray(idx, mode="P")
    img.putpalette([0, 0, 0, 200, 10, 20] + [0] * 762)
    img.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png", 3)
    assert tuple(out[12, 16]) == (200, 10, 20) and tuple(out[0, 0]) == (0, 0, 0)
    assert np.array_equal(read_mask(tmp_path / "p.png"), disk_mask())


def test_16bit_png_and_tiff_scale_to_8bit(tmp_path):
    v = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80
    Image.fromarray(v).save(tmp_path / "g16.png")
    # The full-scale rule (unit) is kept on request; the default is a per-image percentile window.
    out = read_image(tmp_path / "g16.png", 3, intensity="unit")
    assert out.dtype == np.uint8
    assert np.array_equal(out[..., 0], np.round(v / 257.0).astype(np.uint8))
    lo, hi = np.percentile(v.astype(np.float64), [0.5, 99.5])
    expect = np.clip(np.round((v - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    assert np.array_equal(read_image(tmp_path / "g16.png", 3)[..., 0], expect)
    v3 = np.stack([v, v // 2, np.full_like(v, 65535)], -1)
    tifffile.imwrite(tmp_path / "c16.tif", v3, photometric="rgb")
    out3 = read_image(tmp_path / "c16.tif", 3, intensity="unit")
    assert np.array_equal(out3, np.round(v3 / 257.0).astype(np.uint8))
    # One window for all channels: the constant 65535 channel is the brightest value -> 255.
    assert (read_image(tmp_path / "c16.tif", 3)[..., 2] == 255).all()


def test_8bit_tiff_and_cmyk_jpeg(tmp_path):
    a = rgb()
    tifffile.imwrite(tmp_path / "x.tif", a, photometric="rgb")
    assert np.array_equal(read_image(tmp_path / "x.tif", 3), a)
    flat = np.zeros((24, 32, 3), np.uint8) + np.array([180, 90, 40], np.uint8)
    Image.fromarray(flat).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    out = read_image(tmp_path / "cmyk.jpg", 3)
    assert out.shape == (24, 32, 3)
    assert np.abs(out.astype(int) - flat).max() <= 6


@pytest.mark.parametrize("kind", ["png", "jpg", "tif"])
def test_truncated_files_raise_dataerror_naming_the_file(tmp_path, kind):
    p = tmp_path / f"broken image.{kind}"
    if kind == "tif":
        tifffile.imwrite(p, rgb(64, 64), photometric="rgb")
    else:
        Image.fromarray(rgb(64, 64)).save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="broken image"):
        read_image(p, 3)


def test_zero_byte_and_non_image(tmp_path):
    z = tmp_path / "z.png"
    z.write_bytes(b"")
    with pytest.raises(DataError, match="z.png.*zero-byte"):
        read_image(z)
    t = tmp_path / "notes.jpg"
    t.write_text("this is not an image")
    with pytest.raises(DataError, match="notes.jpg"):
        read_mask(t)
    with pytest.raises(DataError, match="not found"):
        read_image(tmp_path / "missing.png")


def test_mask_conventions(tmp_path):
    d = disk_mask()
    assert np.array_equal(read_mask(save(tmp_path / "m01.png", d.astype(np.uint8))), d)  # 0/1
    assert np.array_equal(read_mask(save(tmp_path / "m255.png", d.astype(np.uint8) * 255)), d)
    rgbm = np.repeat(d[..., None].astype(np.uint8) * 255, 3, -1)
    assert np.array_equal(read_mask(save(tmp_path / "mrgb.png", rgbm)), d)
    Image.fromarray(d).save(tmp_path / "m1bit.png")  # mode "1"
    assert np.array_equal(read_mask(tmp_path / "m1bit.png"), d)
    Image.fromarray(d.astype(np.uint16) * 65535).save(tmp_path / "m16.png")
    assert np.array_equal(read_mask(tmp_path / "m16.png"), d)
    Image.fromarray(d.astype(np.uint16) * 255).save(tmp_path / "m16_255.png")  # 16-bit file, 8-bit values
    assert np.array_equal(read_mask(tmp_path / "m16_255.png"), d)
    # Half-scale rule: 128 is foreground, 127 is not.
    v = np.where(d, 128, 127).astype(np.uint8)
    assert np.array_equal(read_mask(save(tmp_path / "mhalf.png", v)), d)
    # A JPEG mask with compression noise still gives the disk, up to a few edge pixels.
    save(tmp_path / "mj.jpg", d.astype(np.uint8) * 255, quality=75)
    assert (read_mask(tmp_path / "mj.jpg") != d).sum() <= 6


def test_empty_and_full_masks_are_valid(tmp_path):
    assert not read_mask(save(tmp_path / "e.png", np.zeros((5, 6), np.uint8))).any()
    assert read_mask(save(tmp_path / "f.png", np.full((5, 6), 255, np.uint8))).all()
