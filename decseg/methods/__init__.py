"""Training methods, one file each; ``build_method(cfg, net)`` picks one by ``train.method``."""
from __future__ import annotations

from torch import nn

from decseg.config import Config
from decseg.methods.base import STANDARD_KEYS, Method
from decseg.methods.decseg import DECSegMethod
from decseg.methods.meanteacher import MeanTeacherMethod
from decseg.methods.supervised import SupervisedMethod
from decseg.errors import ConfigError

METHODS: dict[str, type[Method]] = {
    "decseg": DECSegMethod,
    "supervised": SupervisedMethod,
    "meanteacher": MeanTeacherMethod,
}


def method_class(cfg: Config) -> type[Method]:
    try:
        return METHODS[cfg.train.method]
    except KeyError:
        raise ConfigError(f"train.method={cfg.train.method!r} is not one of: {', '.join(METHODS)}") from None


def build_method(cfg: Config, net: nn.Module) -> Method:
    """Check the config for this method, then wrap ``net`` (and build what else it trains)."""
    cls = method_class(cfg)
    cls.check_config(cfg)
    return cls(cfg, net)


__all__ = ["Method", "METHODS", "STANDARD_KEYS", "build_method", "method_class"]
