"""Intensity rules on hand-made arrays with known percentiles, and on real 16-bit / signed / float files."""
import numpy as np
import pytest
import tifffile
from PIL import Image

from decseg.config import load_config
from decseg.data.imageio import read_image
from decseg.data.intensity import (IntensityRule, contrast_warning, dataset_window, grey_levels,
                                   intensity_rule)
from decseg.errors import ConfigError


def ramp(lo: int, hi: int, dtype, shape=(40, 50)) -> np.ndarray:
    """Values evenly from lo to hi (so the percentiles are known: p% -> lo + p/100 * (hi - lo))."""
    return np.round(np.linspace(lo, hi, shape[0] * shape[1])).reshape(shape).astype(dtype)


def expected(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip(np.round((a.astype(np.float64) - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def test_uint8_is_unchanged_under_every_rule():
    a = np.random.default_rng(0).integers(0, 256, (20, 30, 3)).astype(np.uint8)
    for spec in ("auto", "unit", "percentile", "percentile:5,95", "window:-160,240", "minmax"):
        assert np.array_equal(intensity_rule(spec).apply(a), a)
    assert np.array_equal(intensity_rule("auto").apply(np.eye(3, dtype=bool)), np.eye(3, dtype=np.uint8) * 255)


def test_percentile_window_on_12_bit_data_in_uint16():
    a = ramp(0, 2657, np.uint16)  # 12-bit detector, used range 0..2657
    lo, hi = np.percentile(a.astype(np.float64), [0.5, 99.5])
    out = intensity_rule("auto").apply(a)
    assert out.dtype == np.uint8 and out.shape == a.shape
    assert np.array_equal(out, expected(a, lo, hi))
    assert grey_levels(out) == 256
    assert np.array_equal(intensity_rule("percentile").apply(a), out)
    lo2, hi2 = np.percentile(a.astype(np.float64), [2, 98])
    assert np.array_equal(intensity_rule("percentile:2,98").apply(a), expected(a, lo2, hi2))
    # the old full-scale rule: 2657 / 257 -> 10, eleven grey levels
    unit = intensity_rule("unit").apply(a)
    assert unit.max() == 10 and grey_levels(unit) == 11


def test_signed_ct_fixed_window_and_minmax():
    ct = ramp(-1024, 1561, np.int16)
    soft = intensity_rule("window:-160,240").apply(ct)
    assert np.array_equal(soft, expected(ct, -160, 240))
    assert soft[ct <= -160].max() == 0 and soft[ct >= 240].min() == 255
    assert soft[ct == 40].tolist() and set(soft[ct == 40].tolist()) == {128}  # mid-window -> mid-grey
    mm = intensity_rule("minmax").apply(ct)
    assert mm.min() == 0 and mm.max() == 255 and np.array_equal(mm, expected(ct, -1024, 1561))
    assert grey_levels(intensity_rule("unit").apply(ct)) <= 7  # the collapse the old rule made


def test_float_wide_range_and_non_finite_values():
    f = ramp(-3000, 5979, np.float32)
    out = intensity_rule("auto").apply(f)
    lo, hi = np.percentile(f.astype(np.float64), [0.5, 99.5])
    assert np.array_equal(out, expected(f, lo, hi))
    assert (out == 0).mean() < 0.01 and (out == 255).mean() < 0.01  # the old rule clipped 97 %
    g = f.copy()
    g[0, :5] = np.nan
    g[1, 0], g[1, 1] = np.inf, -np.inf
    out = intensity_rule("auto").apply(g)
    finite = g[np.isfinite(g)].astype(np.float64)
    lo, hi = np.percentile(finite, [0.5, 99.5])  # non-finite values do not move the window
    assert (out[0, :5] == 0).all() and out[1, 0] == 255 and out[1, 1] == 0
    rest = np.isfinite(g)
    assert np.array_equal(out[rest], expected(g[rest], lo, hi))
    assert (intensity_rule("minmax").apply(np.full((3, 3), np.nan, np.float32)) == 0).all()


def test_constant_image_becomes_black_and_does_not_warn():
    c = np.full((16, 16), 1234, np.uint16)
    out = intensity_rule("auto").apply(c)
    assert (out == 0).all()
    assert contrast_warning(c, out, "c.tif") is None


def test_one_window_for_all_channels_and_for_a_volume():
    rgb = np.stack([ramp(0, 1000, np.uint16), ramp(0, 2000, np.uint16), ramp(0, 4000, np.uint16)], -1)
    out = intensity_rule("minmax").apply(rgb)
    assert out.shape == rgb.shape
    assert out[..., 2].max() == 255 and out[..., 0].max() == 64  # 1000 / 4000 of the one window
    vol = np.stack([ramp(0, 100, np.int16), ramp(0, 200, np.int16)], 0)  # (2, H, W) volume
    out = intensity_rule("minmax").apply(vol)
    assert out.shape == vol.shape and out[0].max() == 128 and out[1].max() == 255


def test_dataset_window_pools_all_samples():
    a, b = ramp(-1024, 0, np.int16), ramp(0, 1561, np.int16)
    rule = dataset_window([a, b, np.zeros((4, 4), np.uint8)])  # uint8 samples are skipped
    pooled = np.concatenate([a.ravel(), b.ravel()]).astype(np.float64)
    lo, hi = np.percentile(pooled, [0.5, 99.5])
    assert rule.mode == "window" and rule.low == pytest.approx(lo) and rule.high == pytest.approx(hi)
    # the same window for every image: b's own percentiles would map 0 -> 0, the pooled ones do not
    assert rule.apply(b).min() > 0
    assert intensity_rule(rule.spec) == rule
    with pytest.raises(ConfigError, match="no finite"):
        dataset_window([np.zeros((4, 4), np.uint8)])
    with pytest.raises(ConfigError, match="--window"):
        dataset_window([np.full((4, 4), 7, np.int16)])


def test_contrast_warning_thresholds():
    nuclei = ramp(32978, 36863, np.uint16)
    old = intensity_rule("unit").apply(nuclei)
    msg = contrast_warning(nuclei, old, "nuclei_07.png")
    assert msg is not None and "nuclei_07.png" in msg and f"only {grey_levels(old)} grey levels" in msg
    assert grey_levels(old) <= 16
    assert contrast_warning(nuclei, intensity_rule("auto").apply(nuclei), "n.png") is None
    # a source with few values to begin with keeps them all: no warning
    few = (np.arange(400).reshape(20, 20) % 20).astype(np.uint16) * 1000
    assert contrast_warning(few, intensity_rule("auto").apply(few), "few.png") is None
    # a window that misses the data: most pixels clipped to black/white
    f = ramp(-3000, 5979, np.float32)
    clipped = contrast_warning(f, intensity_rule("window:0,255").apply(f), "f.tif")
    assert clipped is not None and "f.tif" in clipped and "clipped" in clipped
    assert contrast_warning(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), "x") is None


def test_specs_round_trip_and_bad_values_name_the_forms():
    for spec in ("auto", "unit", "minmax", "percentile:0.5,99.5", "percentile:1,99", "window:-160,240",
                 "window:-1000,400"):
        rule = intensity_rule(spec)
        assert intensity_rule(rule.spec) == rule
        assert IntensityRule.from_dict(rule.to_dict(chosen_by="test")) == rule
    assert intensity_rule("percentile") == IntensityRule("percentile", 0.5, 99.5)
    assert intensity_rule("auto").to_dict()["low"] == 0.5
    for bad in ("dataset", "window:240,-160", "window:1", "percentile:-1,50", "percentile:5,101", "x"):
        with pytest.raises(ConfigError, match="window:LOW,HIGH"):
            intensity_rule(bad)


def test_config_key_is_validated():
    assert load_config(None, []).data.intensity == "auto"
    assert load_config(None, ["data.intensity=window:-160,240"]).data.intensity == "window:-160,240"
    with pytest.raises(ConfigError, match=r"data.intensity=.*percentile:LOW,HIGH"):
        load_config(None, ["data.intensity=window:3,1"])


def test_read_image_applies_the_rule_to_real_files(tmp_path):
    ct = ramp(-1024, 1561, np.int16)
    tifffile.imwrite(tmp_path / "ct.tif", ct)
    got = read_image(tmp_path / "ct.tif", 1, intensity="window:-160,240")
    assert np.array_equal(got[..., 0], expected(ct, -160, 240))
    u16 = ramp(32978, 36863, np.uint16)
    Image.fromarray(u16).save(tmp_path / "n.png")
    lo, hi = np.percentile(u16.astype(np.float64), [0.5, 99.5])
    assert np.array_equal(read_image(tmp_path / "n.png", 3)[..., 1], expected(u16, lo, hi))
    f = ramp(-3000, 5979, np.float32)
    tifffile.imwrite(tmp_path / "f.tif", f)
    assert grey_levels(read_image(tmp_path / "f.tif", 1)) == 256


def test_large_arrays_are_mapped_in_chunks_with_the_same_result(monkeypatch):
    import decseg.data.intensity as intensity

    vol = np.random.default_rng(1).normal(0, 500, (7, 33, 29)).astype(np.float32)
    vol[3, 4, :5] = [np.nan, np.inf, -np.inf, 1e9, -1e9]
    whole = intensity_rule("window:-160,240").apply(vol)
    monkeypatch.setattr(intensity, "CHUNK_VALUES", 1000)  # 6,699 values -> 7 chunks
    assert np.array_equal(intensity_rule("window:-160,240").apply(vol), whole)
    assert whole.shape == vol.shape and whole[3, 4, :3].tolist() == [0, 255, 0]
