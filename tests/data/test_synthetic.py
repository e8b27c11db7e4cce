"""``decseg synth``: determinism, layout, lesion variety."""
from __future__ import annotations

import numpy as np
import yaml
from scipy import ndimage

from decseg.cli.main import main as cli
from decseg.data.layout import DatasetLayout
from decseg.data.synthetic import generate_dataset, generate_image


def files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_output(tmp_path):
    a = generate_dataset(tmp_path / "a", n=5, size=64, seed=7, labeled=2, n_val=2, n_test=2)
    b = generate_dataset(tmp_path / "b", n=5, size=64, seed=7, labeled=2, n_val=2, n_test=2)
    c = generate_dataset(tmp_path / "c", n=5, size=64, seed=8, labeled=2, n_val=2, n_test=2)
    fa, fb, fc = files(a), files(b), files(c)
    assert len(fa) == 2 * (5 + 2 + 2) + 4  # images+masks, 3 split files, dataset.yaml
    assert fa == fb
    imgs = [k for k in fa if "images" in str(k)]
    assert all(fa[k] != fc[k] for k in imgs)


def test_lesions_vary_in_size_and_count():
    areas, counts, fg = [], [], []
    for i in range(40):
        image, mask, info = generate_image(3, "train", i, 96)
        assert image.dtype == np.uint8 and image.shape == (96, 96, 3) and mask.shape == (96, 96)
        assert 1 <= info["lesions"] <= 3
        counts.append(info["lesions"])
        labels, n = ndimage.label(mask)
        areas += list(np.bincount(labels.ravel())[1:])
        fg.append(mask.mean())
    assert set(counts) == {1, 2, 3}
    assert max(areas) / min(areas) >= 10  # lesion sizes span more than a 10x range
    assert 0.02 < np.mean(fg) < 0.4
    # Images differ in colour and illumination.
    means = np.array([generate_image(3, "train", i, 64)[0].reshape(-1, 3).mean(0) for i in range(10)])
    assert means.std(0).min() > 5


def test_cli_writes_a_valid_layout(tmp_path, capsys):
    out = tmp_path / "syn"
    assert cli(["synth", str(out), "--n", "8", "--size", "64", "--labeled", "3", "--n-val", "2",
                "--n-test", "3", "--seed", "1"]) == 0
    lay = DatasetLayout(out)
    assert len(lay.labeled_ids) == 3 and len(lay.unlabeled_ids) == 5
    assert lay.test_sets() == ["synth-test"] and len(lay.items("synth-test")) == 3
    assert len(lay.items("val")) == 2
    info = yaml.safe_load((out / "dataset.yaml").read_text())
    assert (info["name"], info["channels"], info["classes"], info["size"]) == ("synth", 3, 2, 64)
    assert "3 labeled" in capsys.readouterr().out
    assert cli(["synth", str(out), "--n", "8"]) == 2  # refuses to overwrite
