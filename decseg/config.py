"""Typed configuration: defaults, then a YAML file, then ``key=value`` overrides.

The settings layer (docs/ARCHITECTURE.md): no torch, no models. Every other layer reads a
:class:`Config`. Unknown keys and wrong types are errors that name the key and
the expected type, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from decseg.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"

# The choice lists of the string settings. The packages that implement a choice read its list
# from here (e.g. decseg.methods registers exactly METHODS), so each list has one owner.
INTERPOLATIONS = ("area", "bilinear", "parity")
METHODS = ("decseg", "supervised", "meanteacher", "fixmatch", "unimatch", "cps", "bcp")
TRAIN_AMP = ("off", "bf16", "fp16")
PREDICT_AMP = ("off", "bf16")
CONV_WEIGHT_GRAD = ("auto", "gemm", "native")
#: train.cpu_memory besides auto (decseg/accel/malloc.py says what each does)
CPU_MEMORY_MODES = ("cache", "return", "reuse", "system")
#: data.intensity forms (decseg/data/intensity.py applies them; docs/DATA.md says what each does)
INTENSITY_FORMS = "auto, unit, minmax, percentile, percentile:LOW,HIGH (0 <= LOW < HIGH <= 100) or window:LOW,HIGH"


def intensity_spec(spec: str) -> tuple[str, float | None, float | None]:
    """(mode, low, high) of a data.intensity value; ValueError naming the accepted forms.

    Parsed here, in the settings layer, so Config.validate and decseg.data.intensity share it.
    """
    text = str(spec).strip().lower()
    mode, _, args = text.partition(":")
    if mode in ("auto", "unit", "minmax") and not args:
        return mode, None, None
    if mode == "percentile" and not args:
        return mode, 0.5, 99.5
    if mode in ("percentile", "window") and args:
        parts = args.split(",")
        try:
            low, high = (float(v) for v in parts) if len(parts) == 2 else (math.nan, math.nan)
        except ValueError:
            low = high = math.nan
        ok = math.isfinite(low) and math.isfinite(high) and low < high
        if ok and (mode == "window" or (0 <= low and high <= 100)):
            return mode, low, high
    raise ValueError(f"{spec!r} is not an intensity rule; use {INTENSITY_FORMS}")


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false, so ``amp: off`` stays the string "off"."""


_Yaml12Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)


def half_size(size: int) -> int:
    """Half-scale input size ``s = 32 * round(S / 64)`` (Python's round, as the paper's code)."""
    return 32 * round(size * 0.5 / 32)


@dataclass
class DataConfig:
    name: str = "polyp"
    size: int = 352  # S: full input size; must be a multiple of 32
    channels: int = 3  # C: image channels fed to the network
    classes: int = 2  # K: background + lesion
    # Image interpolation for the resized views: "area", "bilinear", or "parity"
    # (nearest for images too, as the released code does). Masks are always nearest.
    interpolation: str = "area"
    geometric_aug: bool = False  # random flips/rotations; off in the paper config
    num_workers: int = 2
    # a folder with labeled.txt and unlabeled.txt used instead of DATA/splits ("" = DATA/splits);
    # decseg compare writes one per label ratio and seed and shares it between methods
    splits: str = ""
    # non-uint8 images -> 8 bit (docs/DATA.md): auto (uint8 /255, others per-image 0.5-99.5
    # percentile window), unit, minmax, percentile[:LOW,HIGH], window:LOW,HIGH
    intensity: str = "auto"

    @property
    def half_size(self) -> int:
        return half_size(self.size)


@dataclass
class ModelConfig:
    encoder: str = "res2net50d"  # a timm name: five-level CNN, four-level hierarchical, or plain ViT
    # true: timm's pretrained weights; false: random init; a path: local checkpoint
    pretrained: Union[bool, str] = True
    cfa: bool = True  # cross-level feature aggregation
    sc: bool = True  # second (half-scale) decoder and the scale-consistency loss
    dcf: bool = True  # dual-scale complementary fusion decoder (needs sc)


@dataclass
class TrainConfig:
    method: str = "decseg"  # decseg | supervised | meanteacher | fixmatch | unimatch | cps | bcp
    spc: bool = True  # perturbed pass + L_spc
    cc: bool = True  # reconstruction generators + L_cc (needs spc)
    semi: bool = True  # use unlabeled data at all
    iterations: int = 10000
    batch_labeled: int = 3
    batch_unlabeled: int = 3
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    consistency: float = 1.0  # lambda on L_sc + L_spc + L_cc
    rampup: int = 0  # sigmoid ramp-up length of lambda in iterations; 0 = constant (released code)
    ema_decay: float = 0.99  # mean teacher, BCP's teacher
    # FixMatch's tau / UniMatch's conf_thresh: pseudo-labelled pixels below it are ignored
    confidence_threshold: float = 0.95
    val_every: int = 200
    log_every: int = 20
    image_every: int = 1000  # TensorBoard images; 0 = never
    seed: int = 1337
    amp: str = "bf16"  # off | bf16 | fp16
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # auto: channels_last on CUDA and under bf16 on CPU; NCHW for fp32 on CPU, where oneDNN's
    # fp32 channels_last kernels measured 1.29x slower for this model
    channels_last: Union[bool, str] = "auto"
    # auto: apply SGD to each parameter during backward and free its gradient at once (same
    # update, 1.7 GB less peak for the paper model); off under DDP, fp16 and compile
    optimizer_in_backward: Union[bool, str] = "auto"
    # weight gradient of the >=1024-channel 3x3 convs: gemm (one matrix product, 5-9x faster on
    # CPUs in bf16), native (the library kernel), auto (gemm on CPU, native on CUDA)
    conv_weight_grad: str = "auto"
    # CPU: what happens to the blocks a step frees (decseg/accel/malloc.py). cache: decseg's block
    # cache (reuse, bounded by the high-water mark); return: give them back at once (RSS follows
    # the memory in use, page faults on re-allocation); reuse: glibc keeps them (no faults, RSS =
    # high-water mark); system: glibc's defaults. auto: cache under bf16/fp16 for models above
    # 100 M parameters (return where no C++ compiler can build the cache), reuse otherwise
    cpu_memory: str = "auto"
    compile: bool = False
    checkpointing: bool = False  # activation checkpointing of the 2048-channel fusion levels
    sync_bn: bool = False  # SyncBatchNorm under DDP
    max_nonfinite: int = 5  # consecutive non-finite steps before the run stops


@dataclass
class PredictConfig:
    batch_size: int = 8
    tta: bool = False  # horizontal-flip test-time augmentation
    amp: str = "off"  # off | bf16
    channels_last: bool = True  # NHWC tensors (fp32 NHWC and NCHW predict equally fast at 352)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "Config":
        """Check values that types alone cannot; raises ConfigError with what to do."""
        d, m, t = self.data, self.model, self.train
        if d.size < 64 or d.size % 32:
            raise ConfigError(
                f"data.size={d.size} must be a multiple of 32 and at least 64 (the encoder downsamples "
                f"by 32, and the half-scale input must be too); try data.size={max(64, 32 * round(d.size / 32))}"
            )
        if d.channels < 1:
            raise ConfigError(f"data.channels={d.channels} must be >= 1")
        if d.classes < 2:
            raise ConfigError(f"data.classes={d.classes} must be >= 2 (background + lesion)")
        _choice("data.interpolation", d.interpolation, INTERPOLATIONS)
        try:
            intensity_spec(d.intensity)
        except ValueError as e:
            raise ConfigError(f"data.intensity={e}") from None
        _choice("train.method", t.method, METHODS)
        _choice("train.amp", t.amp, TRAIN_AMP)
        _choice("predict.amp", self.predict.amp, PREDICT_AMP)
        _choice("train.conv_weight_grad", t.conv_weight_grad, CONV_WEIGHT_GRAD)
        _choice("train.cpu_memory", t.cpu_memory, ("auto", *CPU_MEMORY_MODES))
        for key in ("channels_last", "optimizer_in_backward"):
            value = getattr(t, key)
            if isinstance(value, str) and value != "auto":
                raise ConfigError(f"train.{key}={value!r} must be true, false or auto")
        if not (t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:")):
            raise ConfigError(f"train.device={t.device!r} must be auto, cpu, cuda or cuda:N")
        if m.dcf and not m.sc:
            raise ConfigError(
                "model.dcf=true needs model.sc=true: the fusion decoder fuses the two scale "
                "decoders. Set model.dcf=false too, or model.sc=true."
            )
        if t.cc and not t.spc and t.method == "decseg" and t.semi:
            raise ConfigError(
                "train.cc=true needs train.spc=true: the generators reconstruct from the "
                "perturbed pass. Set train.cc=false too, or train.spc=true."
            )
        for key in ("iterations", "batch_labeled", "val_every", "log_every", "max_nonfinite"):
            if getattr(t, key) < 1:
                raise ConfigError(f"train.{key}={getattr(t, key)} must be >= 1")
        for key in ("batch_unlabeled", "image_every", "rampup", "seed"):
            if getattr(t, key) < 0:
                raise ConfigError(f"train.{key}={getattr(t, key)} must be >= 0")
        for key in ("lr", "weight_decay", "consistency", "poly_power"):
            value = getattr(t, key)
            if not math.isfinite(value) or value < 0 or (key == "lr" and value == 0):
                raise ConfigError(f"train.{key}={value} must be a finite number "
                                  f"{'> 0' if key == 'lr' else '>= 0'}")
        for key in ("momentum", "ema_decay"):
            value = getattr(t, key)
            if not 0 <= value < 1:  # also false for nan
                raise ConfigError(f"train.{key}={value} must be in [0, 1)")
        if not 0 <= t.confidence_threshold <= 1:  # also false for nan
            raise ConfigError(f"train.confidence_threshold={t.confidence_threshold} must be in [0, 1]")
        if d.num_workers < 0:
            raise ConfigError(f"data.num_workers={d.num_workers} must be >= 0")
        if d.splits != d.splits.strip() or "\x00" in d.splits:
            raise ConfigError(f"data.splits={d.splits!r}: give a folder path without surrounding "
                              f"spaces (a folder with labeled.txt and unlabeled.txt), or leave it empty")
        if self.predict.batch_size < 1:
            raise ConfigError(f"predict.batch_size={self.predict.batch_size} must be >= 1")
        return self


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not one of: {', '.join(allowed)}")


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotated type ``tp``; ints are accepted for floats."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(key, value, arg)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-4" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected bool (true/false), got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected int, got {value!r} ({type(value).__name__})")
    if tp in (str, float) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r} ({type(value).__name__})")
    return value


#: keys of earlier versions, with what to write instead
_RENAMED = {
    "train.return_freed_memory": "use train.cpu_memory=return (true), train.cpu_memory=system "
                                 "(false) or train.cpu_memory=auto",
}


def _apply(cfg: Config, key: str, value: Any) -> None:
    parts = key.split(".")
    if len(parts) != 2:
        raise ConfigError(
            f"config key {key!r} must look like section.name, sections: {', '.join(_SECTIONS)}"
        )
    section, name = parts
    if section not in _SECTIONS:
        raise ConfigError(f"unknown config section {section!r} in {key!r}; known: {', '.join(_SECTIONS)}")
    obj = getattr(cfg, section)
    hints = typing.get_type_hints(type(obj))
    if name not in hints:
        if key in _RENAMED:
            raise ConfigError(f"config key {key!r} was replaced: {_RENAMED[key]}")
        raise ConfigError(
            f"unknown config key {key!r}; known keys in {section}: {', '.join(sorted(hints))}"
        )
    setattr(obj, name, _coerce(key, value, hints[name]))


def _flatten(d: dict[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, values in d.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{source}: unknown config section {section!r}; known: {', '.join(_SECTIONS)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping of keys")
        for k, v in values.items():
            flat[f"{section}.{k}"] = v
    return flat


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=0.001"`` -> ``("train.lr", 0.001)``; values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. train.lr=0.001")
    key, raw = text.split("=", 1)
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if value is None and raw.strip().lower() in ("null", "none", "~"):
        value = raw
    return key.strip(), value


def find_config(name_or_path: str | Path) -> Path:
    """A path to a YAML file, or the name of a bundled preset (``polyp``, ``isic2018``, ``lgg``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    bundled = CONFIG_DIR / f"{name_or_path}.yaml"
    if bundled.is_file():
        return bundled
    presets = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config {str(name_or_path)!r} is not a file nor a preset; presets: {', '.join(presets)}")


def config_from_dict(d: dict[str, Any], source: str = "<dict>") -> Config:
    cfg = Config()
    for k, v in _flatten(d, source).items():
        _apply(cfg, k, v)
    return cfg


def yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's error as one line with the line and column (1-based) of the file, not its
    ``in "<unicode string>"`` lines: ``line 2, column 1: expected ',' or ']', but got '<stream end>'
    (while parsing a flow sequence started at line 1, column 8)``."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    text = f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem
    context, start = getattr(e, "context", None), getattr(e, "context_mark", None)
    if context:
        where = f" started at line {start.line + 1}, column {start.column + 1}" if start is not None else ""
        text += f" ({context}{where})"
    return text


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                validate: bool = True) -> Config:
    """Defaults, then the YAML file (or preset name), then ``key=value`` overrides."""
    cfg = Config()
    if path is not None:
        p = find_config(path)
        try:
            raw = yaml_load(p.read_text(encoding="utf-8-sig")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {yaml_problem(e)}; fix the syntax there") from None
        except UnicodeDecodeError as e:  # e.g. a binary file, or a Latin-1 comment
            raise ConfigError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: a config file must be a mapping of sections")
        for k, v in _flatten(raw, str(p)).items():
            try:
                _apply(cfg, k, v)
            except ConfigError as e:
                raise ConfigError(f"{p}: {e}") from None
    for text in overrides or []:
        _apply(cfg, *parse_override(text))
    return cfg.validate() if validate else cfg
