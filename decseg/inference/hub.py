"""Sharing trained networks the way segmentation models are shared on the Hugging Face hub.

An export folder (``decseg export --checkpoint CKPT --hf DIR``) holds::

    model.safetensors   the segmentation network's state dict (no generators, no training state)
    config.json         decseg's resolved config, the format version, what the network expects
    README.md           a model card with the hub's YAML front matter

Such a folder, or a hub id ``OWNER/NAME`` of an uploaded one, loads wherever a ``.pt`` checkpoint
does (``decseg.inference.checkpoint.load_checkpoint``) and through :func:`from_pretrained`. The
files are untrusted input: weights are read with safetensors only (no pickle), and config.json is
checked key by key before anything is built from it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import torch

from decseg.config import Config, config_from_dict
from decseg.errors import CheckpointError, ConfigError, DataError, DecsegError, environment_error
from decseg.inference.checkpoint import FORMAT_VERSION, load_checkpoint, model_from_checkpoint, stored_config

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
HF_FORMAT_VERSION = 1
LIBRARY_NAME = "decseg"
TAGS = ("medical-image-segmentation", "semi-supervised", "image-segmentation")
MAX_CONFIG_BYTES = 4 * 2**20  # a decseg config.json is a few KB; refuse to parse a huge one
# The files an export consists of; hf download --local-dir adds .cache/ and the hub .gitattributes.
EXPORT_ENTRIES = {WEIGHTS_FILE, CONFIG_FILE, CARD_FILE, ".cache", ".gitattributes"}

# config.json: every key, and the keys of each block (anything else is refused)
TOP_KEYS = ("library_name", "format_version", "decseg_version", "weights", "input", "output", "training",
            "config")
INPUT_KEYS = ("channels", "size", "value_range", "interpolation", "intensity")
OUTPUT_KEYS = ("classes", "class_names", "logits")
TRAINING_KEYS = ("method", "iteration", "best_val_dice", "checkpoint", "dataset")
# owner/name: the form of a hub model id that is not a local path (no leading "." or "/", one slash)
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
_FILE_SUFFIXES = (".pt", ".pth", ".safetensors", ".json", ".bin", ".ckpt")
LOGITS = "B x K x S x S float logits of the fused decoder (o3), or of the full-scale decoder (o1) when model.dcf is off"


class PretrainedModel(NamedTuple):
    """What :func:`from_pretrained` returns: ``net, config = decseg.from_pretrained(...)``."""

    net: torch.nn.Module  # the segmentation network, in eval mode on the device asked for
    config: Config  # its resolved config (``model.pretrained`` set to false)


# -- hub ids ----------------------------------------------------------------------------------

def is_export_dir(path: Path) -> bool:
    """A folder that is meant to be an export: it holds config.json or model.safetensors."""
    return path.is_dir() and ((path / CONFIG_FILE).exists() or (path / WEIGHTS_FILE).exists())


def looks_like_hub_id(source: str | os.PathLike) -> bool:
    """``OWNER/NAME`` that is not an existing local path and does not look like a file name."""
    text = os.fspath(source)
    return (bool(_HUB_ID.fullmatch(text)) and not text.lower().endswith(_FILE_SUFFIXES)
            and not Path(text).exists())


def offline_help(repo_id: str) -> str:
    """How to proceed without network access: download the folder elsewhere, pass it as DIR."""
    local = repo_id.split("/")[-1]
    return (f"on a machine with network run `hf download {repo_id} --local-dir {local}` (older huggingface_hub: "
            f"`huggingface-cli download {repo_id} --local-dir {local}`), copy the folder here and pass it instead "
            f"of the id, e.g. --checkpoint {local} or decseg.from_pretrained('{local}')")


@contextmanager
def _hub_quiet() -> Iterator[None]:
    """huggingface_hub logs each retry of a failed request as a warning; the failure itself is
    reported by decseg in one line, so its logger is kept to errors during the download."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def download(repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """The local snapshot folder of hub model ``repo_id`` (model.safetensors, config.json, README.md).

    Files already in the Hugging Face cache are used without network (also under
    ``HF_HUB_OFFLINE=1``). A failure is one CheckpointError line that says what to do.
    """
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, HFValidationError,
                                            LocalEntryNotFoundError, RepositoryNotFoundError,
                                            RevisionNotFoundError)
    except ImportError:
        raise CheckpointError(f"{repo_id}: no such local folder, and loading a hub id needs the huggingface_hub "
                              f"package: pip install huggingface_hub, or {offline_help(repo_id)}") from None
    at = f" (revision {revision})" if revision else ""
    try:
        with _hub_quiet():
            folder = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                       allow_patterns=[WEIGHTS_FILE, CONFIG_FILE, CARD_FILE])
    except LocalEntryNotFoundError:  # offline mode, or no connection, and nothing cached
        from huggingface_hub import constants

        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "no connection to the Hugging Face hub"
        raise CheckpointError(f"{repo_id}{at}: no such local folder, and it could not be fetched from the "
                              f"Hugging Face hub ({why}, and it is not in the local cache); "
                              f"{offline_help(repo_id)}") from None
    except GatedRepoError:
        raise CheckpointError(f"{repo_id}: the hub repository is gated; accept its terms on huggingface.co and "
                              f"log in with `hf auth login`, or {offline_help(repo_id)}") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"{repo_id}: no such local folder, and no such model on the Hugging Face hub (or it "
                              f"is private: log in with `hf auth login`); check the id or the path") from None
    except RevisionNotFoundError:
        raise CheckpointError(f"{repo_id}: the hub repository has no revision {revision!r}; give an existing "
                              f"branch, tag or commit") from None
    except HFValidationError as e:
        raise CheckpointError(f"{repo_id}: not a valid hub id nor a local path ({e}); check it") from None
    except (HfHubHTTPError, OSError) as e:
        if environment_error(e) is not None:  # a full disk or permissions in the cache: said as such
            raise
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise CheckpointError(f"{repo_id}{at}: could not be fetched from the Hugging Face hub ({first[:200]}); "
                              f"try again, or {offline_help(repo_id)}") from None
    return Path(folder)


# -- reading an export folder ----------------------------------------------------------------

def _bad(path: Path, problem: str, todo: str = "export the folder again with decseg export --checkpoint CKPT "
                                                 "--hf DIR (or download it again)") -> CheckpointError:
    return CheckpointError(f"{path}: {problem}; {todo}")


def _check_keys(block: Any, allowed: tuple[str, ...], where: str, path: Path) -> dict:
    if not isinstance(block, dict):
        raise _bad(path, f"{where} must be a JSON object, got {type(block).__name__}")
    unknown = sorted(set(block) - set(allowed))
    if unknown:
        raise _bad(path, f"unknown key(s) {', '.join(map(repr, unknown))} in {where} (known: {', '.join(allowed)})",
                   "remove them, or use the decseg version that wrote the file")
    missing = [k for k in allowed if k not in block]
    if missing:
        raise _bad(path, f"{where} lacks key(s) {', '.join(map(repr, missing))}")
    return block


def _int(value: Any, key: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(path, f"{key} must be an integer, got {value!r}")
    return value


def read_export_config(folder: Path) -> tuple[dict, Config]:
    """config.json of an export folder, checked: ``(the JSON object, its typed config)``."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise _bad(path, f"missing; an export folder holds {CONFIG_FILE} beside {WEIGHTS_FILE}")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise _bad(path, f"is {size / 2**20:.0f} MiB, not a decseg config (a few KB)")
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise _bad(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise _bad(path, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(meta, dict):
        raise _bad(path, f"must be a JSON object, got {type(meta).__name__}")
    if meta.get("library_name") != LIBRARY_NAME:
        raise _bad(path, f"not a decseg export (library_name is {meta.get('library_name')!r}, not 'decseg')",
                   "pass a folder written by decseg export --hf")
    version = meta.get("format_version")
    if version != HF_FORMAT_VERSION:
        raise _bad(path, f"has format_version={version!r}; this decseg reads version {HF_FORMAT_VERSION}",
                   f"use the decseg version that wrote it (decseg_version {meta.get('decseg_version')!r})")
    _check_keys(meta, TOP_KEYS, "the top level", path)
    if meta["weights"] != WEIGHTS_FILE:
        raise _bad(path, f"weights must be {WEIGHTS_FILE!r}, got {meta['weights']!r}")
    if not isinstance(meta["config"], dict):
        raise _bad(path, "config must be a JSON object of config sections")
    try:
        cfg = config_from_dict(meta["config"], source=f"{path} (config)").validate()
    except ConfigError as e:
        raise _bad(path, f"its config is invalid: {e}",
                   "use the decseg version that wrote it, or export again") from None
    inp = _check_keys(meta["input"], INPUT_KEYS, "input", path)
    out = _check_keys(meta["output"], OUTPUT_KEYS, "output", path)
    training = _check_keys(meta["training"], TRAINING_KEYS, "training", path)
    for key, value, expected in (("input.channels", inp["channels"], cfg.data.channels),
                                 ("input.size", inp["size"], cfg.data.size),
                                 ("output.classes", out["classes"], cfg.data.classes)):
        if _int(value, key, path) != expected:
            raise _bad(path, f"{key}={value} contradicts its config ({expected})",
                       "the file was edited: export the folder again")
    for key, value, expected in (("input.interpolation", inp["interpolation"], cfg.data.interpolation),
                                 ("input.intensity", inp["intensity"], getattr(cfg.data, "intensity", None))):
        if value != expected:
            raise _bad(path, f"{key}={value!r} contradicts its config ({expected!r})",
                       "the file was edited: export the folder again")
    names = out["class_names"]
    if names is not None and (not isinstance(names, list) or len(names) != cfg.data.classes
                              or not all(isinstance(n, str) for n in names)):
        raise _bad(path, f"output.class_names must be null or {cfg.data.classes} strings, got {names!r}")
    _int(training["iteration"], "training.iteration", path)
    best = training["best_val_dice"]
    if best is not None and (isinstance(best, bool) or not isinstance(best, (int, float))):
        raise _bad(path, f"training.best_val_dice must be a number or null, got {best!r}")
    return meta, cfg


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file as a state dict on the CPU; a damaged or foreign file is one line."""
    if not path.is_file():
        raise _bad(path, f"missing; an export folder holds {WEIGHTS_FILE} beside {CONFIG_FILE}")
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises its own SafetensorError, OSError or ValueError
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise _bad(path, f"cannot be read as a safetensors file: it is truncated or corrupt, or another format "
                         f"({type(e).__name__}: {first[:160]})") from None
    return state


def load_export_dir(folder: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """An export folder as a checkpoint dict (``config``, ``model``, ``iteration``, ...).

    The dict has the keys of a ``.pt`` checkpoint, so every reader of one reads it, plus
    ``weights_file`` (named in messages about the weights) and ``export`` (config.json).
    """
    folder = Path(folder)
    meta, cfg = read_export_config(folder)
    state = read_weights(folder / WEIGHTS_FILE)
    if torch.device(map_location).type != "cpu":
        state = {k: v.to(map_location) for k, v in state.items()}
    return {"format_version": FORMAT_VERSION, "config": cfg.to_dict(), "model": state,
            "iteration": meta["training"]["iteration"], "best_val_dice": meta["training"]["best_val_dice"],
            "weights_file": str(folder / WEIGHTS_FILE), "export": meta}


def from_pretrained(source: str | os.PathLike, device: str | torch.device = "cpu", *,
                    revision: str | None = None, cache_dir: str | Path | None = None) -> PretrainedModel:
    """The network of an export folder, a hub id ``OWNER/NAME`` or a ``.pt`` checkpoint.

    Returns ``PretrainedModel(net, config)`` (a named tuple: ``net, cfg = from_pretrained(...)``),
    ``net`` in eval mode on ``device`` (``auto`` picks a GPU when there is one). Nothing is
    downloaded for the encoder: all weights come from the file. ``revision`` / ``cache_dir`` go to
    huggingface_hub for a hub id.
    """
    from decseg.accel.device import resolve_device

    if looks_like_hub_id(source):
        path = download(os.fspath(source), revision=revision, cache_dir=cache_dir)
        ckpt = load_export_dir(path)
    else:
        path = Path(source).expanduser()
        ckpt = load_checkpoint(path)
    cfg = stored_config(ckpt, path)
    dev = resolve_device(str(device), key="device")
    return PretrainedModel(model_from_checkpoint(ckpt, cfg, path, dev), cfg)


# -- writing an export folder ----------------------------------------------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_facts(data: str | Path, cfg: Config) -> dict:
    """What the card and config.json say about the training data, read from the dataset folder."""
    from decseg.data import DatasetLayout

    layout = DatasetLayout(data)
    if layout.classes != cfg.data.classes or layout.channels != cfg.data.channels:
        raise DataError(f"{layout.root / 'dataset.yaml'}: classes={layout.classes}, channels={layout.channels}, "
                        f"but the model has data.classes={cfg.data.classes}, data.channels={cfg.data.channels}; "
                        f"--data must be the dataset the model was trained on")
    info = layout.info
    splits = layout.root / "splits"
    facts: dict[str, Any] = {
        "name": layout.name, "channels": layout.channels,
        "classes": layout.classes, "size": layout.size,
        "train_images": len(layout.train_ids()), "labeled": len(layout.labeled_ids),
        "unlabeled": len(layout.unlabeled_ids),
        "val_images": len(layout.items("val")) if layout.has_split("val") else 0,
        "test_sets": {name: len(layout.items(name)) for name in layout.test_sets()},
        "split_files": {f"splits/{n}": _sha256(splits / n) for n in ("labeled.txt", "unlabeled.txt", "val.txt")
                        if (splits / n).is_file()},
    }
    for key in ("seed", "source", "task", "protocol", "labeled_request", "val_request", "class_names",
                "intensity", "label_map"):
        if key in info:
            facts[key] = info[key]
    return facts


def read_metrics(path: str | Path) -> dict[str, dict[str, float | int]]:
    """``decseg evaluate --json`` output: set name -> {metric: number}; other values are dropped."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"--metrics {path}: no such file; write it with decseg evaluate --pred PRED --gt GT "
                        f"--json {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"--metrics {path}: not a JSON file ({e}); pass the --json output of decseg evaluate") from None
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, dict) for v in raw.values()):
        raise DataError(f"--metrics {path}: expected an object mapping each test set to its metrics, as decseg "
                        f"evaluate --json writes")
    metrics = {name: {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
               for name, values in raw.items()}
    if not any(metrics.values()):
        raise DataError(f"--metrics {path}: holds no numeric metrics; pass the --json output of decseg evaluate")
    return metrics


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4f}"
    return str(value)


def _checkpoint_kind(ckpt: dict, checkpoint: Path) -> str:
    if "export" in ckpt:
        return str(ckpt["export"]["training"].get("checkpoint") or "export")
    return "last.pt" if "resume" in ckpt else checkpoint.name


def export_config(ckpt: dict, cfg: Config, checkpoint: Path, dataset: dict | None) -> dict:
    """The config.json object of an export (see the module docstring)."""
    from decseg import __version__

    intensity = getattr(cfg.data, "intensity", None)
    names = getattr(cfg.data, "class_names", None) or (dataset or {}).get("class_names")
    if not (isinstance(names, list) and len(names) == cfg.data.classes):
        names = None
    best = ckpt.get("best_val_dice")
    return {
        "library_name": LIBRARY_NAME, "format_version": HF_FORMAT_VERSION, "decseg_version": __version__,
        "weights": WEIGHTS_FILE,
        "input": {"channels": cfg.data.channels, "size": cfg.data.size, "value_range": [0.0, 1.0],
                  "interpolation": cfg.data.interpolation, "intensity": intensity},
        "output": {"classes": cfg.data.classes, "class_names": names, "logits": LOGITS},
        "training": {"method": cfg.train.method, "iteration": int(ckpt.get("iteration") or 0),
                     "best_val_dice": None if best is None or not math.isfinite(best) else float(best),
                     "checkpoint": _checkpoint_kind(ckpt, checkpoint), "dataset": dataset},
        "config": cfg.to_dict(),
    }


def model_card(meta: dict, cfg: Config, params: int, *, license: str = "other",
               metrics: dict[str, dict[str, float | int]] | None = None, metrics_file: str | None = None) -> str:
    """README.md of an export: the hub's YAML front matter, then what the model is and how to load it."""
    from huggingface_hub import ModelCardData

    front = ModelCardData(library_name=LIBRARY_NAME, license=license, tags=list(TAGS),
                          pipeline_tag="image-segmentation").to_yaml()
    d, m, t = cfg.data, cfg.model, cfg.train
    training, dataset = meta["training"], meta["training"]["dataset"]
    names = meta["output"]["class_names"]
    lines = [f"---\n{front}\n---", "",
             f"# {dataset['name'] if dataset else 'decseg model'}: {t.method} ({m.encoder} encoder, {d.size} px)", "",
             f"A 2D segmentation network trained with decseg {meta['decseg_version']}: the DEC-Seg network with "
             f"a `{m.encoder}` encoder ({params:,} parameters), trained with the `{t.method}` method.", "",
             "Research use only: not a medical device, not validated for diagnosis.", "",
             "## Input and output", "",
             f"- input: B x {d.channels} x {d.size} x {d.size} images in [0, 1] (8-bit values / 255, no mean/std "
             f"normalisation), resized to {d.size} x {d.size} with `{d.interpolation}` interpolation"
             + (f"; images that are not 8-bit are first mapped to 0-255 by the intensity rule "
                f"`data.intensity={meta['input']['intensity']}`" if meta["input"]["intensity"] is not None else ""),
             f"- output: {LOGITS}",
             f"- classes: {d.classes}" + (f" ({', '.join(names)})" if names else
                                          " (0 = background)" if d.classes > 2 else " (background, lesion)"), "",
             "## Training data", ""]
    if dataset:
        tests = ", ".join(f"{k} ({v})" for k, v in dataset["test_sets"].items()) or "none"
        lines += [f"- dataset `{dataset['name']}`" + (f" (task `{dataset['task']}`)" if dataset.get("task") else "")
                  + (f", from {dataset['source']}" if dataset.get("source") else ""),
                  f"- {dataset['channels']} channel(s), {dataset['classes']} classes, prepared at {dataset['size']} px",
                  f"- training pool: {dataset['train_images']} images; validation: {dataset['val_images']} images; "
                  f"test sets: {tests}"]
    else:
        lines += [f"- not described: the checkpoint does not record its training dataset, and none was given at "
                  f"export time; the network takes {d.channels} channel(s) and {d.classes} classes at {d.size} px, "
                  f"and the training config's label `data.name` is `{d.name}`"]
    lines += ["", "## Split", ""]
    if dataset:
        total = dataset["labeled"] + dataset["unlabeled"]
        share = f" ({100 * dataset['labeled'] / total:.1f}% of the training pool)" if total else ""
        lines += [f"- labeled: {dataset['labeled']} images{share} (`splits/labeled.txt`); unlabeled: "
                  f"{dataset['unlabeled']} images (`splits/unlabeled.txt`)"]
        if dataset.get("labeled_request"):
            lines.append(f"- labeled amount asked for: {dataset['labeled_request']}")
        lines.append(f"- split seed: {dataset.get('seed', 'not recorded in dataset.yaml')}")
        lines += [f"- `{name}` sha256 `{digest}`" for name, digest in dataset["split_files"].items()]
    else:
        lines.append("- not known: the split files were not available at export time")
    sc_text = "on" if m.sc else "off"
    lines += ["", "## Method", "",
              f"- `train.method={t.method}`, `train.semi={str(t.semi).lower()}` (unlabeled images "
              f"{'used' if t.semi and t.method != 'supervised' else 'not used'})",
              f"- network switches: `model.cfa={str(m.cfa).lower()}` (cross-level feature aggregation), "
              f"`model.sc={str(m.sc).lower()}` (half-scale decoder, {sc_text}), `model.dcf={str(m.dcf).lower()}` "
              f"(dual-scale fusion decoder)"]
    if t.method == "decseg":
        lines.append(f"- DEC-Seg losses: `train.spc={str(t.spc).lower()}` (perturbation consistency), "
                     f"`train.cc={str(t.cc).lower()}` (cross-generative consistency), consistency weight "
                     f"{t.consistency:g}, ramp-up {t.rampup} iterations")
    lines += [f"- {t.iterations} iterations planned, batches of {t.batch_labeled} labeled + {t.batch_unlabeled} "
              f"unlabeled images, SGD lr {t.lr:g} (momentum {t.momentum:g}, weight decay {t.weight_decay:g}, "
              f"poly {t.poly_power:g}), seed {t.seed}, `train.amp={t.amp}`",
              f"- encoder initialisation: `model.pretrained={str(m.pretrained).lower()}`", "",
              "The complete resolved config is the `config` object of `config.json`.", "",
              "## Results", ""]
    kind = training["checkpoint"]
    if training["best_val_dice"] is None:
        lines.append(f"- exported from `{kind}` at iteration {training['iteration']}; no validation Dice recorded "
                     f"(the run had no validation split)")
    elif kind == "last.pt":
        lines.append(f"- exported from `last.pt` at iteration {training['iteration']}; best validation Dice of the "
                     f"run so far {training['best_val_dice']:.4f} (reached at an earlier or the same iteration: "
                     f"`best.pt` holds that network)")
    else:
        lines.append(f"- exported from `{kind}`: best validation Dice {training['best_val_dice']:.4f} at iteration "
                     f"{training['iteration']} (the checkpoint is chosen on the validation split, never on a test set)")
    if metrics:
        sets = list(metrics)
        keys = list(dict.fromkeys(k for values in metrics.values() for k in values))
        lines += ["", f"Test metrics (`decseg evaluate`, from `{metrics_file}`):", "",
                  "| metric | " + " | ".join(sets) + " |", "|---|" + "---:|" * len(sets)]
        lines += [f"| {k} | " + " | ".join(_fmt(metrics[s].get(k, "")) for s in sets) + " |" for k in keys]
    else:
        lines.append("- no test metrics were given at export time (`decseg export ... --metrics results.json` adds "
                     "those of `decseg evaluate --json results.json`)")
    lines += ["", "## How to use", "",
              "With decseg installed, from this folder or its hub id:", "",
              "```bash",
              "decseg predict --checkpoint OWNER/NAME --images my_images --out pred   # or --checkpoint DIR",
              "```", "", "```python", "import decseg",
              'net, cfg = decseg.from_pretrained("OWNER/NAME")  # or a local folder; net is in eval mode',
              f"logits = net.predict_logits(images)  # images: B x {d.channels} x {d.size} x {d.size} in [0, 1]",
              "```", "",
              f"Without decseg's loader: `safetensors.torch.load_file(\"{WEIGHTS_FILE}\")` is the state dict of "
              f"`decseg.build_model(config)` for the `config` object of `{CONFIG_FILE}` (with "
              f"`model.pretrained` false).", "",
              "## Files", "",
              f"- `{WEIGHTS_FILE}`: the segmentation network's weights (no training state, no pickle)",
              f"- `{CONFIG_FILE}`: format version {HF_FORMAT_VERSION}, decseg's resolved config, the expected input "
              f"and output, the training facts above",
              f"- `{CARD_FILE}`: this card", ""]
    return "\n".join(lines)


def check_export_target(out: Path, overwrite: bool) -> None:
    """An existing non-empty DIR needs --overwrite, and then must be a decseg export itself."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DecsegError(f"--hf {out} is a file; give a folder path")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    if not overwrite:
        raise DecsegError(f"--hf {out} already exists and is not empty; choose another folder, or pass --overwrite "
                          f"to replace the export in it")
    others = [e for e in entries if e not in EXPORT_ENTRIES]
    if others or not (out / CONFIG_FILE).is_file():
        shown = ", ".join(others[:5]) or f"no {CONFIG_FILE}"
        raise DecsegError(f"--hf {out} is not a decseg export folder ({shown}); --overwrite replaces only an "
                          f"earlier export: choose another folder")


def _save_weights(state: dict[str, torch.Tensor], path: Path, final: Path) -> None:
    """safetensors' save_file; its I/O failures (a SafetensorError carrying the OS error number)
    become the OSError they are, naming ``final``, so a full disk is reported as one."""
    from safetensors.torch import save_file

    try:
        # one metadata key: safetensors stores the metadata map in no fixed order, and one key keeps
        # the file byte-identical for the same weights (the format facts are in config.json)
        save_file(state, str(path), metadata={"format": "pt"})
    except Exception as e:
        code = re.search(r"os error (\d+)", str(e))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(final)) from e


def _readable_by_all(folder: Path) -> None:
    """Folder and files get the permissions a plain mkdir / open would give (the umask's)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for p in folder.iterdir():
        p.chmod(0o666 & ~umask)


def _separate_storage(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors; safetensors refuses tensors that share memory, so those are copied."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        ptr = v.untyped_storage().data_ptr()
        if ptr in seen and v.numel():
            v = v.clone()
        seen.add(ptr)
        out[k] = v
    return out


def export_hf(checkpoint: str | Path, out: str | Path, *, data: str | Path | None = None,
              metrics: str | Path | None = None, license: str = "other", overwrite: bool = False) -> dict:
    """Write ``out/{model.safetensors,config.json,README.md}`` from a checkpoint, atomically.

    The weights are checked to build the network of the stored config first, and the written
    folder is read back (config checks, every tensor equal) before it is renamed into place.
    ``data``: the training dataset folder, described in the card (the checkpoint does not record
    where its data lay). ``metrics``: a ``decseg evaluate --json`` file for the card's results.
    """
    from decseg.io import atomic_dir, atomic_write, atomic_write_text

    out, checkpoint = Path(out), Path(checkpoint)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", license):
        raise ConfigError(f"--license {license!r}: give a license id as the hub lists them (e.g. mit, apache-2.0, "
                          f"cc-by-4.0, other)")
    check_export_target(out, overwrite)
    ckpt = load_checkpoint(checkpoint)
    cfg = stored_config(ckpt, checkpoint)
    if data is not None and not Path(data).is_dir():
        raise DataError(f"--data {data}: no such dataset folder; give the training dataset, or leave --data out "
                        f"(the card then says the data are not described)")
    dataset = dataset_facts(data, cfg) if data is not None else None
    results = read_metrics(metrics) if metrics is not None else None
    meta = export_config(ckpt, cfg, checkpoint, dataset)
    net = model_from_checkpoint(ckpt, stored_config(ckpt, checkpoint), checkpoint, "cpu")  # the weights fit
    params = sum(p.numel() for p in net.parameters())
    del net
    state = _separate_storage(ckpt["model"])
    del ckpt
    card = model_card(meta, cfg, params, license=license, metrics=results,
                      metrics_file=Path(metrics).name if metrics is not None else None)
    with atomic_dir(out, overwrite=True) as tmp:
        atomic_write(tmp / WEIGHTS_FILE, lambda p: _save_weights(state, p, out / WEIGHTS_FILE))
        atomic_write_text(tmp / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
        atomic_write_text(tmp / CARD_FILE, card)
        _readable_by_all(tmp)  # mkdtemp/mkstemp make 0700/0600; a shared model is read by others
        back = load_export_dir(tmp)  # what a reader will see: the same config and every tensor equal
        if back["config"] != meta["config"] or set(back["model"]) != set(state) or not all(
                torch.equal(back["model"][k], v) for k, v in state.items()):
            raise DecsegError(f"the export in {out} did not read back equal to {checkpoint}; nothing was written, "
                              f"please report this")
    return {"out": str(out), "tensors": len(state), "parameters": params,
            "bytes": (out / WEIGHTS_FILE).stat().st_size, "dataset": dataset is not None,
            "metrics": results is not None}
