"""Contrast kept by `decseg prepare`: grey levels and 1st/99th percentiles of wide-range images,
before and after prepare, with the full-scale rule (unit: /65535 for 16-bit) and the default.

Writes four seeded synthetic images (a signed CT slice in HU, a 12-bit MRI slice in uint16,
uint16 fluorescence nuclei, a float32 TIFF), runs the real `prepare folder` on them twice
(`intensity="unit"` and the default `auto`), and reads the prepared PNGs back.

    python benchmarks/intensity_contrast.py [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decseg.data.intensity import contrast_warning, intensity_rule  # noqa: E402
from decseg.data.prepare import prepare_dataset  # noqa: E402

SIZE = 256


def _grid() -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[:SIZE, :SIZE].astype(np.float64)


def ct_slice(rng: np.random.Generator) -> np.ndarray:
    """Axial abdomen-like slice in HU (int16, -1024..1561): air, fat, muscle, liver, a lesion, bone."""
    y, x = _grid()
    hu = np.full((SIZE, SIZE), -1024.0)
    body = ((y - 128) / 100) ** 2 + ((x - 128) / 118) ** 2 < 1
    hu[body] = -100  # subcutaneous fat
    inner = ((y - 128) / 88) ** 2 + ((x - 128) / 106) ** 2 < 1
    hu[inner] = 45  # muscle / soft tissue
    liver = ((y - 115) / 45) ** 2 + ((x - 85) / 50) ** 2 < 1
    hu[liver] = 60
    hu[np.hypot(y - 110, x - 80) < 12] = 95  # enhancing lesion
    hu[((y - 190) / 18) ** 2 + ((x - 128) / 22) ** 2 < 1] = 700  # vertebra
    hu[((y - 190) / 9) ** 2 + ((x - 128) / 11) ** 2 < 1] = 1561  # cortical bone
    hu[np.hypot(y - 150, x - 170) < 15] = -10  # bowel content
    hu += rng.normal(0, 12, hu.shape) * body
    return np.clip(np.round(hu), -1024, 1561).astype(np.int16)


def mri_12bit(rng: np.random.Generator) -> np.ndarray:
    """12-bit MRI in uint16 using 0..2657: dark background, brain 900-2657 with structure."""
    y, x = _grid()
    head = ((y - 128) / 110) ** 2 + ((x - 128) / 95) ** 2 < 1
    v = np.abs(rng.normal(0, 30, (SIZE, SIZE)))  # Rician-like background
    v[head] = 1200 + 500 * np.cos(y[head] / 9) * np.sin(x[head] / 11) + rng.normal(0, 40, head.sum())
    v[np.hypot(y - 100, x - 140) < 14] = 2657  # bright lesion
    return np.clip(np.round(v), 0, 2657).astype(np.uint16)


def nuclei(rng: np.random.Generator) -> np.ndarray:
    """uint16 fluorescence, 32,978-36,863: background plus bright blobs."""
    y, x = _grid()
    v = 33200 + rng.normal(0, 60, (SIZE, SIZE))
    for cy, cx in rng.integers(20, SIZE - 20, (25, 2)):
        v += 3400 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 60)
    return np.clip(np.round(v), 32978, 36863).astype(np.uint16)


def float_wide(rng: np.random.Generator) -> np.ndarray:
    """float32 TIFF from -3,000 to 5,979 (a reconstruction's floating output)."""
    y, x = _grid()
    v = 1500 + 4000 * np.sin(y / 30) * np.cos(x / 25) + rng.normal(0, 50, (SIZE, SIZE))
    v[0, 0], v[-1, -1] = -3000, 5979
    return np.clip(v, -3000, 5979).astype(np.float32)


SOURCES = {"ct_int16": (ct_slice, ".tif"), "mri_12bit": (mri_12bit, ".png"),
           "nuclei_uint16": (nuclei, ".png"), "float32": (float_wide, ".tif")}


def stats(a: np.ndarray) -> dict:
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    p1, p99 = np.percentile(finite.astype(np.float64), [1, 99])
    out = {"grey_levels": int(np.unique(finite).size), "p1": round(float(p1), 1), "p99": round(float(p99), 1),
           "min": float(finite.min()), "max": float(finite.max())}
    if a.dtype == np.uint8:  # share of pixels at black or white
        out["saturated_pct"] = round(100.0 * float(np.mean((a == 0) | (a == 255))), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        (src / "images").mkdir(parents=True)
        (src / "masks").mkdir()
        raw = {}
        for name, (make, ext) in SOURCES.items():
            raw[name] = a = make(rng)
            if ext == ".tif":
                tifffile.imwrite(src / "images" / f"{name}{ext}", a)
            else:
                Image.fromarray(a).save(src / "images" / f"{name}{ext}")
            mask = np.zeros(a.shape, np.uint8)
            mask[100:120, 70:90] = 255
            Image.fromarray(mask).save(src / "masks" / f"{name}.png")
        for rule in ("unit", "auto"):
            out = Path(tmp) / rule
            report = prepare_dataset("folder", src, out, labeled=2, val=0, intensity=rule, workers=1)
            warned = {w["id"] for w in report["contrast_warnings"]}
            for name in SOURCES:
                png = np.asarray(Image.open(next(out.glob(f"**/images/{name}.png"))))
                results.setdefault(name, {"source": stats(raw[name]), "dtype": str(raw[name].dtype)})
                results[name][rule] = {**stats(png), "warned": name in warned}
    # the same numbers without prepare, from the rule itself (a cross-check of the table)
    for name, a in raw.items():
        for rule in ("unit", "auto"):
            out = intensity_rule(rule).apply(a)
            assert stats(out)["grey_levels"] == results[name][rule]["grey_levels"], (name, rule)
            assert (contrast_warning(a, out, name) is not None) == results[name][rule]["warned"], (name, rule)

    print("| image | source: values, p1 / p99 | old (/65535): levels, p1 / p99, saturated | "
          "default (auto): levels, p1 / p99, saturated |")
    print("|---|---|---|---|")
    for name, r in results.items():
        s, u, a = r["source"], r["unit"], r["auto"]
        cells = [f"{v['grey_levels']}, {v['p1']:g} / {v['p99']:g}, {v['saturated_pct']:g} % black/white"
                 f"{' (warned)' if v['warned'] else ''}" for v in (u, a)]
        print(f"| {name} ({r['dtype']}, {s['min']:g}..{s['max']:g}) | {s['grey_levels']}, {s['p1']:g} / "
              f"{s['p99']:g} | {cells[0]} | {cells[1]} |")
    soft = intensity_rule("window:-160,240").apply(raw["ct_int16"])
    body = raw["ct_int16"] > -1024
    st = stats(soft)
    results["ct_int16"]["window:-160,240"] = st
    print(f"\nct_int16 with --window=-160,240: {st['grey_levels']} grey levels, p1 / p99 {st['p1']:g} / "
          f"{st['p99']:g}; {np.unique(soft[body]).size} levels inside the body")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
