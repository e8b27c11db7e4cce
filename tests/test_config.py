"""Typed config: defaults, presets, overrides, and the errors users meet."""
import pytest
import yaml

import decseg
from decseg.config import Config, half_size, load_config
from decseg.errors import ConfigError


def test_defaults_are_the_released_settings():
    cfg = load_config()
    assert cfg.model.encoder == "res2net50d"
    assert (cfg.model.cfa, cfg.model.sc, cfg.model.dcf) == (True, True, True)
    assert (cfg.train.spc, cfg.train.cc, cfg.train.semi) == (True, True, True)
    t = cfg.train
    assert (t.iterations, t.batch_labeled, t.batch_unlabeled, t.lr, t.seed) == (10000, 3, 3, 0.01, 1337)
    assert (t.momentum, t.weight_decay, t.poly_power, t.val_every) == (0.9, 1e-4, 0.9, 200)


@pytest.mark.parametrize("size,half", [(352, 192), (256, 128), (224, 128), (64, 32), (288, 128), (160, 64)])
def test_half_size_uses_python_round(size, half):
    assert half_size(size) == half


@pytest.mark.parametrize("preset,size", [("polyp", 352), ("isic2018", 352), ("lgg", 256)])
def test_presets_load(preset, size):
    cfg = load_config(preset)
    assert cfg.data.size == size and cfg.data.name == preset


def test_overrides_beat_file_and_parse_types(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"train": {"lr": 0.5, "iterations": 7}}))
    cfg = decseg.load_config(f, ["train.lr=0.001", "model.pretrained=false", "data.size=64", "train.amp=off"])
    assert cfg.train.lr == 0.001 and cfg.train.iterations == 7
    assert cfg.model.pretrained is False and cfg.data.size == 64 and cfg.train.amp == "off"
    assert load_config(None, ["model.pretrained=/w/r2n.pth"]).model.pretrained == "/w/r2n.pth"
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0  # int accepted for float


def test_unknown_key_names_the_key_and_lists_known_ones():
    with pytest.raises(ConfigError, match=r"train\.lrate.*known keys in train:.*\blr\b"):
        load_config(None, ["train.lrate=0.1"])
    with pytest.raises(ConfigError, match="unknown config section 'optim'"):
        load_config(None, ["optim.lr=0.1"])


def test_wrong_type_names_key_and_expected_type(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.iterations: expected int, got 'many'"):
        load_config(None, ["train.iterations=many"])
    with pytest.raises(ConfigError, match=r"model\.cfa: expected bool"):
        load_config(None, ["model.cfa=1"])
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  batch_labeled: 2.5\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: train\.batch_labeled: expected int"):
        load_config(f)


@pytest.mark.parametrize("override,msg", [
    ("data.size=100", "multiple of 32"),
    ("data.size=32", "at least 64"),
    ("train.amp=fp8", "train.amp"),
    ("train.method=mixmatch", "train.method"),
    ("train.device=tpu", "train.device"),
    ("data.interpolation=cubic", "data.interpolation"),
])
def test_bad_values_rejected(override, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config(None, [override])


def test_impossible_switch_combinations_rejected():
    with pytest.raises(ConfigError, match="model.dcf=true needs model.sc=true"):
        load_config(None, ["model.sc=false"])
    load_config(None, ["model.sc=false", "model.dcf=false"])  # valid: single decoder
    with pytest.raises(ConfigError, match="train.cc=true needs train.spc=true"):
        load_config(None, ["train.spc=false"])


def test_yaml_roundtrip(tmp_path):
    import yaml

    cfg = load_config(None, ["model.encoder=resnet18", "train.iterations=3"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg and isinstance(again, Config)


def test_missing_config_file_lists_presets():
    with pytest.raises(ConfigError, match="presets: .*polyp"):
        load_config("no_such_config")


def test_yaml_words_and_exponents(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  amp: off\n  weight_decay: 5e-4\n")
    cfg = load_config(f)
    assert cfg.train.amp == "off" and cfg.train.weight_decay == 5e-4


@pytest.mark.parametrize("override,needle", [
    ("train.lr=nan", "train.lr=nan must be a finite number > 0"),
    ("train.lr=inf", "train.lr=inf must be a finite number > 0"),
    ("train.momentum=5", "train.momentum=5.0 must be in [0, 1)"),
    ("train.seed=-1", "train.seed=-1 must be >= 0"),
    ("train.val_every=0", "train.val_every=0 must be >= 1"),
    ("train.image_every=-1", "train.image_every=-1 must be >= 0"),
])
def test_values_that_would_poison_a_run_are_refused_at_load(override, needle):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert needle in str(e.value)


def test_config_owns_the_choice_lists():
    from decseg.config import CPU_MEMORY_MODES, METHODS
    from decseg.methods import METHOD_CLASSES

    assert tuple(METHOD_CLASSES) == METHODS
    with pytest.raises(ConfigError, match="train.method='mixmatch' is not one of: decseg, supervised"):
        load_config(None, ["train.method=mixmatch"])
    assert "cache" in CPU_MEMORY_MODES


def test_set_takes_several_values_after_one_flag():
    from decseg.cli.main import build_parser

    parser = build_parser()
    one_flag = parser.parse_args(["train", "--data", "D", "--out", "R", "--set", "train.lr=0.5", "data.size=64"])
    repeated = parser.parse_args(["train", "--data", "D", "--out", "R", "--set", "train.lr=0.5",
                                  "--set", "data.size=64"])
    assert one_flag.overrides == repeated.overrides == ["train.lr=0.5", "data.size=64"]
    cfg = load_config(None, one_flag.overrides)
    assert cfg.train.lr == 0.5 and cfg.data.size == 64
