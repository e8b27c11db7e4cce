"""decseg export --hf: model.safetensors + config.json + a model card; loading them back everywhere."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import decseg
from decseg.cli.main import main
from decseg.errors import CheckpointError
from decseg.inference.checkpoint import load_checkpoint, load_model_from_checkpoint
from decseg.inference.hub import HF_FORMAT_VERSION, PretrainedModel, looks_like_hub_id

FILES = ["README.md", "config.json", "model.safetensors"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_overrides):
    """A 2-iteration run on a dataset with a test set, its test metrics, and its --hf export."""
    from decseg.data import generate_dataset

    root = tmp_path_factory.mktemp("hf")
    data = generate_dataset(root / "data", n=6, size=64, seed=5, labeled=3, n_val=2, n_test=3)
    run = root / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--set", *tiny_overrides,
                 "train.iterations=2", "train.val_every=1"]) == 0
    best = run / "checkpoints" / "best.pt"
    assert main(["predict", "--checkpoint", str(best), "--data", str(data), "--out", str(root / "pred_pt"),
                 "--workers", "0"]) == 0
    results = root / "results.json"
    assert main(["evaluate", "--pred", str(root / "pred_pt"), "--gt", str(data / "test"), "--json", str(results)]) == 0
    export = root / "export"
    assert main(["export", "--checkpoint", str(best), "--hf", str(export), "--data", str(data),
                 "--metrics", str(results), "--license", "mit"]) == 0
    return {"root": root, "data": data, "run": run, "best": best, "export": export, "results": results}


def _pngs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def _copy_export(trained, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(trained["export"], target)
    return target


def _edit_config(folder: Path, edit) -> None:
    path = folder / "config.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def test_export_folder_holds_the_three_files_and_no_generators(trained):
    from safetensors import safe_open

    export = trained["export"]
    assert sorted(p.name for p in export.iterdir()) == FILES
    assert not [p for p in export.parent.iterdir() if p.name.startswith(".export")], "no temp folder left"
    ckpt = torch.load(trained["best"], weights_only=True)
    with safe_open(str(export / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
        assert f.metadata()["format"] == "pt"
        assert all(torch.equal(f.get_tensor(k), ckpt["model"][k]) for k in keys)
    assert keys == set(ckpt["model"]) and not any("generator" in k for k in keys)


def test_predictions_from_the_folder_are_byte_identical(trained, tmp_path):
    root, data = trained["root"], trained["data"]
    assert main(["predict", "--checkpoint", str(trained["export"]), "--data", str(data), "--out",
                 str(tmp_path / "pred_dir"), "--workers", "0"]) == 0
    from_pt, from_dir = _pngs(root / "pred_pt"), _pngs(tmp_path / "pred_dir")
    assert len(from_pt) == 3 and from_pt == from_dir
    # soft maps (probabilities as 0-255) are a finer check than the binary maps
    for name, ckpt in (("soft_pt", trained["best"]), ("soft_dir", trained["export"])):
        assert main(["predict", "--checkpoint", str(ckpt), "--images", str(data / "val" / "images"), "--out",
                     str(tmp_path / name), "--soft", "--workers", "0"]) == 0
    soft = _pngs(tmp_path / "soft_pt")
    assert len(soft) == 2 and soft == _pngs(tmp_path / "soft_dir")


def test_from_pretrained_gives_the_same_logits(trained):
    ref, ref_cfg = load_model_from_checkpoint(trained["best"])
    loaded = decseg.from_pretrained(trained["export"])
    assert isinstance(loaded, PretrainedModel)
    net, cfg = loaded
    assert not net.training and cfg.to_dict() == ref_cfg.to_dict() and cfg.model.pretrained is False
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(net.predict_logits(x), ref.predict_logits(x))
    net_pt, _ = decseg.from_pretrained(trained["best"])  # a .pt checkpoint loads the same way
    assert all(torch.equal(a, b) for a, b in zip(net_pt.state_dict().values(), net.state_dict().values()))


def test_config_json_fields(trained):
    meta = json.loads((trained["export"] / "config.json").read_text())
    ckpt = torch.load(trained["best"], weights_only=True)
    assert meta["library_name"] == "decseg" and meta["format_version"] == HF_FORMAT_VERSION
    assert meta["decseg_version"] == decseg.__version__ and meta["weights"] == "model.safetensors"
    assert meta["input"]["channels"] == 3 and meta["input"]["size"] == 64 and meta["input"]["value_range"] == [0, 1]
    assert meta["input"]["interpolation"] == "area"
    assert meta["input"]["intensity"] == ckpt["config"]["data"].get("intensity")
    assert meta["output"]["classes"] == 2 and meta["output"]["class_names"] is None
    training = meta["training"]
    assert training["iteration"] == ckpt["iteration"] and training["best_val_dice"] == ckpt["best_val_dice"]
    assert training["method"] == "decseg" and training["checkpoint"] == "best.pt"
    dataset = training["dataset"]
    assert (dataset["name"], dataset["train_images"], dataset["labeled"], dataset["unlabeled"]) == ("synth", 6, 3, 3)
    assert dataset["val_images"] == 2 and dataset["test_sets"] == {"synth-test": 3} and dataset["seed"] == 5
    assert set(dataset["split_files"]) == {"splits/labeled.txt", "splits/unlabeled.txt", "splits/val.txt"}
    assert meta["config"] == decseg.load_config(trained["run"] / "config.yaml").to_dict()


def test_model_card(trained):
    from huggingface_hub import ModelCard

    text = (trained["export"] / "README.md").read_text()
    card = ModelCard(text)
    assert card.data.library_name == "decseg" and card.data.license == "mit"
    assert {"medical-image-segmentation", "semi-supervised"} <= set(card.data.tags)
    best = torch.load(trained["best"], weights_only=True)
    results = json.loads(trained["results"].read_text())["synth-test"]
    for expected in ("# synth: decseg (test_resnet encoder, 64 px)", "training pool: 6 images",
                     "validation: 2 images", "synth-test (3)", "labeled: 3 images (50.0% of the training pool)",
                     "unlabeled: 3 images", "split seed: 5", "`train.method=decseg`", "`model.cfa=true`",
                     "`train.spc=true`", "`train.cc=true`",
                     f"best validation Dice {best['best_val_dice']:.4f} at iteration {best['iteration']}",
                     f"| meanDic | {results['meanDic']:.4f} |", "| n_images | 3 |",
                     "decseg.from_pretrained(", "decseg predict --checkpoint"):
        assert expected in text, expected


def test_card_without_data_or_metrics_says_what_is_known(trained, tmp_path, capsys):
    out = tmp_path / "bare"
    assert main(["export", "--checkpoint", str(trained["run"] / "checkpoints" / "last.pt"), "--hf", str(out)]) == 0
    assert "no --data given" in capsys.readouterr().err
    text = (out / "README.md").read_text()
    assert "license: other" in text and "not described" in text and "no test metrics" in text
    assert "exported from `last.pt`" in text
    meta = json.loads((out / "config.json").read_text())
    assert meta["training"]["dataset"] is None and meta["training"]["checkpoint"] == "last.pt"


def test_existing_folder_needs_overwrite_and_must_be_an_export(trained, tmp_path, capsys):
    target = _copy_export(trained, tmp_path)
    before = {n: (target / n).read_bytes() for n in FILES}
    best = str(trained["run"] / "checkpoints" / "last.pt")
    assert main(["export", "--checkpoint", best, "--hf", str(target)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert {n: (target / n).read_bytes() for n in FILES} == before
    assert main(["export", "--checkpoint", best, "--hf", str(target), "--overwrite"]) == 0
    assert json.loads((target / "config.json").read_text())["training"]["checkpoint"] == "last.pt"
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    assert main(["export", "--checkpoint", best, "--hf", str(other), "--overwrite"]) == 2
    assert "not a decseg export folder" in capsys.readouterr().err
    assert [p.name for p in other.iterdir()] == ["mine.txt"]
    assert main(["export", "--checkpoint", best, "--hf", str(tmp_path / "x"), "--opset", "17"]) == 2
    assert "--opset applies to --onnx only" in capsys.readouterr().err
    assert main(["export", "--checkpoint", best, "--hf", str(tmp_path / "x"), "--data", str(tmp_path / "nope")]) == 2
    assert "--data" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_write_failure_keeps_the_previous_export(trained, tmp_path, subprocess_env):
    """A real write failure (a file-size limit below the weights' size, like a full disk) in a
    decseg subprocess: exit 2, the earlier export stays as it was, no partial folder is left."""
    target = _copy_export(trained, tmp_path)
    before = {n: (target / n).read_bytes() for n in FILES}
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
        from decseg.cli.main import main
        sys.exit(main(["export", "--checkpoint", {str(trained["best"])!r}, "--hf", {str(target)!r}, "--overwrite"]))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       env=subprocess_env)
    assert r.returncode == 2, r.stderr
    assert "file too large" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert {n: (target / n).read_bytes() for n in FILES} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"], "no partial folder left"


class _Evil:
    """Unpickling this would call print(): what a pickle-based weights file could do."""

    def __reduce__(self):
        return (print, ("code ran while loading",))


def _missing_config(d: Path) -> None:
    (d / "config.json").unlink()


def _missing_weights(d: Path) -> None:
    (d / "model.safetensors").unlink()


def _corrupt_weights(d: Path) -> None:
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])


def _pickle_as_weights(d: Path) -> None:
    torch.save({"w": torch.zeros(1), "x": _Evil()}, d / "model.safetensors")


def _other_network(d: Path) -> None:  # a valid config whose network has other tensors
    _edit_config(d, lambda m: m["config"]["model"].update(cfa=False))


def _unknown_key(d: Path) -> None:
    _edit_config(d, lambda m: m.update(extra=1))


def _future_version(d: Path) -> None:
    _edit_config(d, lambda m: m.update(format_version=HF_FORMAT_VERSION + 1))


def _contradiction(d: Path) -> None:
    _edit_config(d, lambda m: m["input"].update(channels=4))


def _other_resize(d: Path) -> None:
    _edit_config(d, lambda m: m["input"].update(interpolation="bilinear"))


def _not_json(d: Path) -> None:
    (d / "config.json").write_text("{not json")


@pytest.mark.parametrize("damage,names,words", [
    (_missing_config, "config.json", "missing"),
    (_missing_weights, "model.safetensors", "missing"),
    (_corrupt_weights, "model.safetensors", "truncated or corrupt"),
    (_pickle_as_weights, "model.safetensors", "cannot be read as a safetensors file"),
    (_other_network, "model.safetensors", "do not fit the network"),
    (_unknown_key, "config.json", "unknown key(s) 'extra'"),
    (_future_version, "config.json", f"format_version={HF_FORMAT_VERSION + 1}"),
    (_contradiction, "config.json", "input.channels=4 contradicts"),
    (_other_resize, "config.json", "input.interpolation='bilinear' contradicts"),
    (_not_json, "config.json", "not valid JSON (line 1, column 2"),
])
def test_bad_export_folders_are_one_line_errors(trained, tmp_path, capsys, damage, names, words):
    folder = _copy_export(trained, tmp_path)
    damage(folder)
    with pytest.raises(CheckpointError) as failure:
        decseg.from_pretrained(folder)
    message = str(failure.value)
    assert str(folder / names) in message and words in message and "\n" not in message, message
    assert "export" in message or "decseg version" in message, message  # says what to do
    assert "code ran" not in capsys.readouterr().out


def test_bad_folder_exit_code_from_the_cli(trained, tmp_path, subprocess_env):
    folder = _copy_export(trained, tmp_path)
    _other_network(folder)
    r = subprocess.run([sys.executable, "-m", "decseg", "predict", "--checkpoint", str(folder), "--images",
                        str(trained["data"] / "val" / "images"), "--out", str(tmp_path / "p"), "--device", "cpu"],
                       capture_output=True, text=True, timeout=300, env=subprocess_env)
    assert r.returncode == 2, r.stderr
    assert "model.safetensors: its tensors do not fit" in r.stderr and not (tmp_path / "p").exists()


def test_onnx_export_reads_the_folder(trained, tmp_path):
    assert main(["export", "--checkpoint", str(trained["export"]), "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 0


def test_hub_ids_and_local_paths():
    assert looks_like_hub_id("someone/decseg-polyp") and looks_like_hub_id("org_1/model.v2")
    for local in ("run/best.pt", "./export", "/abs/export", "a/b/c", "export", "x/model.safetensors"):
        assert not looks_like_hub_id(local), local
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint("run-that-is-not-here/best.pt")  # a local path: no hub look-up


def test_offline_hub_id_is_one_line_without_network(tmp_path, subprocess_env, trained):
    env = dict(subprocess_env, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"),
               HF_ENDPOINT="http://127.0.0.1:9")  # were a request made, it would go nowhere
    repo = "someone-made-up/decseg-model-that-does-not-exist"
    r = subprocess.run([sys.executable, "-m", "decseg", "predict", "--checkpoint", repo, "--images",
                        str(trained["data"] / "val" / "images"), "--out", str(tmp_path / "p")],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "could not be fetched" in lines[0] and "HF_HUB_OFFLINE" in lines[0]
    assert f"hf download {repo} --local-dir" in lines[0] and "huggingface-cli download" in lines[0]
    script = (f"import decseg\ntry:\n    decseg.from_pretrained({repo!r})\n"
              f"except Exception as e:\n    print(type(e).__name__, e)")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert r.stdout.startswith("CheckpointError ") and "could not be fetched" in r.stdout, r.stdout + r.stderr
    cached = [p for p in (tmp_path / "hf-home").rglob("*") if p.is_file()] if (tmp_path / "hf-home").exists() else []
    assert not cached, cached


def test_cached_hub_id_loads_offline(trained, tmp_path, subprocess_env):
    """A hub id whose files are in the Hugging Face cache loads with HF_HUB_OFFLINE=1, as its folder does."""
    repo, commit = "someone-made-up/decseg-cached", "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hf-home" / "hub" / "models--someone-made-up--decseg-cached"
    shutil.copytree(trained["export"], cache / "snapshots" / commit)
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text(commit)
    env = dict(subprocess_env, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"),
               HF_ENDPOINT="http://127.0.0.1:9")
    script = textwrap.dedent(f"""
        import torch, decseg
        from decseg.inference.checkpoint import load_checkpoint
        net, _ = decseg.from_pretrained({repo!r})
        ref, _ = decseg.from_pretrained({str(trained["export"])!r})
        x = torch.rand(1, 3, 64, 64)
        with torch.inference_mode():
            print("equal", torch.equal(net.predict_logits(x), ref.predict_logits(x)))
        print("iteration", load_checkpoint({repo!r})["iteration"])
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    iteration = torch.load(trained["best"], weights_only=True)["iteration"]
    assert r.stdout.split() == ["equal", "True", "iteration", str(iteration)], r.stdout


def test_an_export_exports_again(trained, tmp_path):
    again = tmp_path / "again"
    assert main(["export", "--checkpoint", str(trained["export"]), "--hf", str(again), "--data",
                 str(trained["data"])]) == 0
    first, second = (json.loads((d / "config.json").read_text()) for d in (trained["export"], again))
    assert second == first  # the same config, training facts and dataset facts
    assert (again / "model.safetensors").read_bytes() == (trained["export"] / "model.safetensors").read_bytes()
