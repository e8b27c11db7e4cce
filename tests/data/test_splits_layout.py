"""Split arithmetic and the dataset layout's validation."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from decseg.data.layout import DatasetLayout
from decseg.data.splits import labeled_split, parse_amount, resolve_count, take
from decseg.errors import DataError

sys.path.insert(0, str(Path(__file__).parent))
from helpers_data import pair  # noqa: E402


def test_parse_amount_fraction_vs_count():
    assert parse_amount("0.1") == 0.1 and isinstance(parse_amount("0.1"), float)
    assert parse_amount("145") == 145 and isinstance(parse_amount("145"), int)
    assert parse_amount("1.0") == 1.0 and isinstance(parse_amount("1.0"), float)
    for bad in ("1.5", "-3", "ten"):
        with pytest.raises(DataError, match="--labeled"):
            parse_amount(bad)


def test_paper_counts():
    assert resolve_count(0.1, 1450) == 145 and resolve_count(0.3, 1450) == 435
    assert resolve_count(0.1, 2075) == 207 and resolve_count(0.3, 2075) == 622
    assert resolve_count(0.1, 1035) == 103 and resolve_count(0.3, 1035) == 310  # LGG, "about 1,030"
    with pytest.raises(DataError, match="only 10"):
        resolve_count(11, 10)


def test_labeled_split_deterministic_disjoint_nested():
    ids = [f"id{i}" for i in range(100)]
    a1, u1, _ = labeled_split(ids, 10, seed=3)
    a2, u2, _ = labeled_split(list(reversed(ids)), 10, seed=3)  # listing order does not matter
    assert a1 == a2 and u1 == u2
    assert not set(a1) & set(u1) and set(a1) | set(u1) == set(ids) and len(a1) == 10
    big, _, _ = labeled_split(ids, 30, seed=3)
    assert set(a1) <= set(big)  # the 10% set is inside the 30% set
    assert labeled_split(ids, 10, seed=4)[0] != a1
    # A fraction is of the base (whole pool), capped to what is left after val.
    lab, unl, note = labeled_split(ids[:90], 1.0, seed=0, base=100)
    assert len(lab) == 90 and not unl and "capped" in note
    with pytest.raises(DataError, match="validation"):
        labeled_split(ids[:90], 95, seed=0)
    assert take(ids, 5, 1, "val") == take(ids, 5, 1, "val")


def make_layout(root: Path, n: int = 6, labeled: int = 2) -> Path:
    for i in range(n):
        pair(root / "train" / "images", root / "train" / "masks", f"id {i}", seed=i)
    (root / "splits").mkdir(parents=True)
    (root / "splits" / "labeled.txt").write_text("".join(f"id {i}\n" for i in range(labeled)))
    (root / "splits" / "unlabeled.txt").write_text("".join(f"id {i}\n" for i in range(labeled, n)))
    (root / "dataset.yaml").write_text(yaml.safe_dump({"name": "t", "channels": 3, "classes": 2, "size": 64}))
    return root


def test_layout_reads_ids_with_spaces(tmp_path):
    lay = DatasetLayout(make_layout(tmp_path / "d"))
    assert lay.labeled_ids == ["id 0", "id 1"] and len(lay.unlabeled_ids) == 4
    assert lay.test_sets() == [] and not lay.has_split("val")
    assert [it.id for it in lay.items("train")] == [f"id {i}" for i in range(6)]
    with pytest.raises(DataError, match="no such split"):
        lay.items("val")


@pytest.mark.parametrize("line, message", [
    ("ghost\n", "not in"),
    ("../../etc/passwd\n", "not a plain file ID"),
    ("id 2\n", "both labeled and unlabeled"),
    ("id 0\nid 0\n", "twice"),
])
def test_layout_rejects_bad_split_files(tmp_path, line, message):
    root = make_layout(tmp_path / "d")
    (root / "splits" / "labeled.txt").write_text(line)
    with pytest.raises(DataError, match=message):
        DatasetLayout(root)


def test_layout_rejects_bad_yaml_and_duplicates(tmp_path):
    root = make_layout(tmp_path / "d")
    (root / "dataset.yaml").write_text("name: t\nchannels: 3\nclasses: 2\n")
    with pytest.raises(DataError, match="size"):
        DatasetLayout(root)
    (root / "dataset.yaml").write_text("name: t\nchannels: three\nclasses: 2\nsize: 64\n")
    with pytest.raises(DataError, match="channels must be int"):
        DatasetLayout(root)
    (root / "dataset.yaml").write_text("name: t\nchannels: 3\nclasses: 2\nsize: 64\n")
    (root / "train" / "images" / "id 0.jpg").write_bytes((root / "train" / "images" / "id 0.png").read_bytes())
    with pytest.raises(DataError, match="same name|share the name"):
        DatasetLayout(root)
    with pytest.raises(DataError, match="not found"):
        DatasetLayout(tmp_path / "nowhere")
    (root / "train" / "images" / "id 0.jpg").unlink()
    (root / "splits" / "unlabeled.txt").unlink()
    with pytest.raises(DataError, match="unlabeled.txt: missing"):
        DatasetLayout(root)
