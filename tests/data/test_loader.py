"""TwoStreamLoader, ShuffledStream, transforms and EvalDataset on real files."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from decseg.config import load_config
from decseg.data import DatasetLayout, EvalDataset, TwoStreamLoader, collate_eval, list_images
from decseg.data.sampler import ShuffledStream
from decseg.data.synthetic import generate_dataset
from decseg.data.transforms import resize_image, resize_mask
from decseg.errors import ConfigError, DataError

sys.path.insert(0, str(Path(__file__).parent))
from helpers_data import save  # noqa: E402


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> DatasetLayout:
    root = generate_dataset(tmp_path_factory.mktemp("d") / "syn", n=16, size=48, seed=2, labeled=6,
                            n_val=3, n_test=2)
    return DatasetLayout(root)


def data_cfg(*overrides):
    return load_config(overrides=["data.size=64", *overrides]).data


def batches(loader, n):
    return [next(loader) for _ in range(n)]


def same(b1, b2):
    (l1, u1), (l2, u2) = b1, b2
    keys = ("image", "image_half", "image_p", "image_half_p")
    return (l1["id"] == l2["id"] and u1["id"] == u2["id"]
            and all(torch.equal(l1[k], l2[k]) and torch.equal(u1[k], u2[k]) for k in keys)
            and torch.equal(l1["mask"], l2["mask"]))


def test_views_shapes_ranges_and_masks(synth):
    lab, unl = next(TwoStreamLoader(synth, data_cfg(), 3, 2, seed=0))
    assert lab["image"].shape == (3, 3, 64, 64) and lab["image_half"].shape == (3, 3, 32, 32)
    assert lab["image_p"].shape == (3, 3, 64, 64) and lab["image_half_p"].shape == (3, 3, 32, 32)
    assert lab["mask"].shape == (3, 64, 64) and lab["mask_half"].shape == (3, 32, 32)
    assert lab["mask"].dtype == torch.long and set(lab["mask"].unique().tolist()) <= {0, 1}
    for k in ("image", "image_half", "image_p", "image_half_p"):
        assert lab[k].dtype == torch.float32 and 0 <= lab[k].min() and lab[k].max() <= 1
    assert not torch.equal(lab["image"], lab["image_p"])  # jittered view differs
    assert unl["image"].shape == (2, 3, 64, 64) and "mask" not in unl  # unlabeled masks never read
    assert set(lab["id"]) <= set(synth.labeled_ids) and set(unl["id"]) <= set(synth.unlabeled_ids)
    # Masks are nearest-resized originals.
    item = synth.train_item(lab["id"][0])
    from decseg.data.imageio import read_mask
    orig = torch.from_numpy(read_mask(item.mask))
    assert torch.equal(lab["mask"][0], resize_mask(orig, 64))
    assert torch.equal(lab["mask_half"][0], resize_mask(orig, 32))
    # Supervised-only: no unlabeled stream.
    lab2, none = next(TwoStreamLoader(synth, data_cfg(), 2, 0, seed=0, semi=False))
    assert none is None and lab2["image"].shape[0] == 2


def test_labeled_epoch_is_a_permutation(synth):
    loader = TwoStreamLoader(synth, data_cfg(), 2, 2, seed=5)
    ids = [i for lab, _ in batches(loader, 6) for i in lab["id"]]
    assert sorted(ids[:6]) == sorted(synth.labeled_ids) and sorted(ids[6:]) == sorted(synth.labeled_ids)
    assert ids[:6] != ids[6:]  # reshuffled each epoch


def test_stream_epochs_and_ddp_shards():
    s = ShuffledStream(12, seed=1, stream=0)
    first = [i for i, _ in s.take(0, 12)]
    assert sorted(first) == list(range(12)) and [i for i, _ in s.take(12, 12)] != first
    shards = [ShuffledStream(12, seed=1, stream=0, rank=r, world_size=3).take(0, 4) for r in range(3)]
    idx = [i for sh in shards for i, _ in sh]
    pos = [p for sh in shards for _, p in sh]
    assert sorted(idx) == list(range(12))  # disjoint and covering
    assert len(set(pos)) == 12  # each sample's randomness is its own
    odd = [ShuffledStream(10, 1, 0, r, 3).take(0, 4) for r in range(3)]
    assert set(i for sh in odd for i, _ in sh) == set(range(10))  # padded, still covering


def test_ddp_loaders_take_disjoint_shards(synth):
    cfg = data_cfg()
    r0 = TwoStreamLoader(synth, cfg, 3, 2, seed=4, rank=0, world_size=2)
    r1 = TwoStreamLoader(synth, cfg, 3, 2, seed=4, rank=1, world_size=2)
    (l0, u0), (l1, u1) = next(r0), next(r1)
    assert not set(l0["id"]) & set(l1["id"]) and set(l0["id"]) | set(l1["id"]) == set(synth.labeled_ids)
    assert not set(u0["id"]) & set(u1["id"])


def test_deterministic_and_resumable_across_worker_counts(synth):
    cfg = data_cfg()
    run = batches(TwoStreamLoader(synth, cfg, 2, 2, seed=9), 5)
    again = batches(TwoStreamLoader(synth, cfg, 2, 2, seed=9), 5)
    assert all(same(a, b) for a, b in zip(run, again))
    other = next(TwoStreamLoader(synth, cfg, 2, 2, seed=10))
    assert not same(run[0], other)
    first = TwoStreamLoader(synth, cfg, 2, 2, seed=9)
    batches(first, 2)
    state = first.state_dict()
    resumed = TwoStreamLoader(synth, cfg, 2, 2, seed=9, num_workers=2)
    resumed.load_state_dict(state)
    assert all(same(a, b) for a, b in zip(run[2:], batches(resumed, 3)))
    resumed.close()
    wrong = {**state, "n_labeled": 99}
    with pytest.raises(DataError, match="same dataset"):
        TwoStreamLoader(synth, cfg, 2, 2, seed=9).load_state_dict(wrong)


def test_interpolation_modes():
    x = torch.arange(16.0).reshape(1, 4, 4) / 15
    area = resize_image(x, 2, "area")
    assert torch.allclose(area[0], torch.nn.functional.avg_pool2d(x[None], 2)[0, 0])
    par = resize_image(x, 2, "parity")
    assert set(par.flatten().tolist()) <= set(x.flatten().tolist())  # nearest: original values only
    bil = resize_image(x, 2, "bilinear")
    assert not torch.allclose(bil, par)
    up_area, up_bil = resize_image(x, 8, "area"), resize_image(x, 8, "bilinear")
    assert torch.equal(up_area, up_bil)  # area enlarges bilinearly
    mixed = resize_image(torch.rand(3, 8, 2), (4, 6), "area")
    assert mixed.shape == (3, 4, 6)
    m = torch.zeros(5, 5, dtype=torch.bool)
    m[1:3, 1:4] = True
    assert set(resize_mask(m, 13).unique().tolist()) == {0, 1}


def test_geometric_aug_moves_image_and_mask_together(tmp_path):
    root = tmp_path / "geo"
    mask = np.zeros((32, 32), bool)
    mask[4:20, 4:9] = True
    mask[15:20, 4:26] = True  # an L: every flip/rotation gives a different mask
    for i in range(4):
        save(root / "train" / "images" / f"s{i}.png", np.repeat(mask[..., None] * 255, 3, -1).astype(np.uint8))
        save(root / "train" / "masks" / f"s{i}.png", mask.astype(np.uint8) * 255)
    (root / "splits").mkdir()
    (root / "splits" / "labeled.txt").write_text("s0\ns1\ns2\ns3\n")
    (root / "splits" / "unlabeled.txt").write_text("")
    (root / "dataset.yaml").write_text(yaml.safe_dump({"name": "g", "channels": 3, "classes": 2, "size": 32}))
    cfg = load_config(overrides=["data.size=64", "data.geometric_aug=true", "data.interpolation=parity"]).data
    loader = TwoStreamLoader(DatasetLayout(root), cfg, 4, 0, seed=0, semi=False)
    seen = set()
    for lab, _ in batches(loader, 4):
        assert torch.equal((lab["image"][:, 0] > 0.5).long(), lab["mask"])
        seen |= {m.numpy().tobytes() for m in lab["mask"]}
    assert len(seen) >= 4  # several different orientations occurred


def test_eval_dataset_splits_and_folders(synth, tmp_path):
    cfg = data_cfg()
    val = EvalDataset(synth, "val", cfg)
    item = val[0]
    assert item["image"].shape == (3, 64, 64) and item["image_half"].shape == (3, 32, 32)
    assert item["mask"].dtype == torch.bool and item["mask"].shape == (48, 48) and item["orig_size"] == (48, 48)
    assert len(EvalDataset(synth, "synth-test", cfg)) == 2 and len(EvalDataset(synth, "test/synth-test", cfg)) == 2
    with pytest.raises(DataError, match="no such split"):
        EvalDataset(synth, "nope", cfg)
    # A folder of images without masks, of mixed sizes and kinds.
    folder = tmp_path / "imgs"
    save(folder / "a b.png", np.zeros((20, 30, 3), np.uint8))
    save(folder / "grey.jpg", np.full((40, 10), 200, np.uint8))
    save(folder / "rgba.png", np.full((8, 8, 4), 9, np.uint8))
    (folder / ".DS_Store").write_bytes(b"junk")
    ds = EvalDataset(None, folder, cfg)
    batch = collate_eval([ds[i] for i in range(len(ds))])
    assert batch["image"].shape == (3, 3, 64, 64) and batch["mask"] == [None] * 3
    assert batch["id"] == ["a b", "grey", "rgba"] and batch["orig_size"] == [(20, 30), (40, 10), (8, 8)]
    assert len(EvalDataset(None, list_images(folder), cfg)) == 3
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="notes.txt"):
        list_images(folder)
    (folder / "notes.txt").unlink()
    bad = folder / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="broken.png"):
        EvalDataset(None, folder, cfg)[1]
    with pytest.raises(ConfigError, match="half-scale"):
        EvalDataset(synth, "val", data_cfg("data.size=32"))


def test_large_jpeg_reduced_decode_matches_full_decode(tmp_path):
    y, x = np.mgrid[0:600, 0:800]
    smooth = np.stack([x * 255 // 800, y * 255 // 600, (x + y) * 255 // 1400], -1).astype(np.uint8)
    save(tmp_path / "big.jpg", smooth, quality=95)
    save(tmp_path / "big_mask.png", (x > 400).astype(np.uint8) * 255)
    from decseg.data.layout import Item
    from decseg.data.datasets import load_pair
    from decseg.data.imageio import read_image
    item = Item("big", tmp_path / "big.jpg", tmp_path / "big_mask.png")
    image, mask, size = load_pair(item, 3, min_side=128)
    assert image.shape[-1] < 800 and size == (600, 800) and mask.shape == (600, 800)
    full = resize_image(torch.from_numpy(read_image(tmp_path / "big.jpg")).permute(2, 0, 1).float() / 255, 64)
    assert (resize_image(image, 64) - full).abs().mean() < 0.01
    ds = EvalDataset(None, [tmp_path / "big.jpg"], data_cfg())
    assert ds[0]["orig_size"] == (600, 800)


def test_bad_training_image_names_the_file_even_from_a_worker(tmp_path):
    root = generate_dataset(tmp_path / "d", n=4, size=64, seed=1, labeled=4, n_val=0, n_test=0)
    victim = root / "train" / "images" / "train_0002.png"
    victim.write_bytes(victim.read_bytes()[:100])
    lay = DatasetLayout(root)
    for workers in (0, 1):
        loader = TwoStreamLoader(lay, data_cfg(), 4, 0, seed=0, num_workers=workers, semi=False)
        with pytest.raises(DataError) as e:
            next(loader)
        assert "train_0002.png" in str(e.value) and "Traceback" not in str(e.value)
