"""Training methods, one file each; ``build_method(cfg, net)`` picks one by ``train.method``.

A new method is one file here and one entry in ``METHOD_CLASSES`` (its name must be listed
in ``decseg.config.METHODS``, which owns the choice list).
"""
from __future__ import annotations

from torch import nn

from decseg.config import METHODS, Config
from decseg.methods.base import Method
from decseg.methods.bcp import BCPMethod
from decseg.methods.cps import CPSMethod
from decseg.methods.decseg import DECSegMethod
from decseg.methods.fixmatch import FixMatchMethod
from decseg.methods.meanteacher import MeanTeacherMethod
from decseg.methods.supervised import SupervisedMethod
from decseg.methods.unimatch import UniMatchMethod

METHOD_CLASSES: dict[str, type[Method]] = {
    "decseg": DECSegMethod,
    "supervised": SupervisedMethod,
    "meanteacher": MeanTeacherMethod,
    "fixmatch": FixMatchMethod,
    "unimatch": UniMatchMethod,
    "cps": CPSMethod,
    "bcp": BCPMethod,
}
assert tuple(METHOD_CLASSES) == METHODS, "decseg.config.METHODS and METHOD_CLASSES must agree"


def method_class(cfg: Config) -> type[Method]:
    """The class for ``train.method`` (a validated config names one of METHODS)."""
    return METHOD_CLASSES[cfg.train.method]


def check_method_config(cfg: Config) -> None:
    """The method's own batch rules; raises ConfigError before anything is built."""
    method_class(cfg).check_config(cfg)


def build_method(cfg: Config, net: nn.Module) -> Method:
    """Check the config for this method, then wrap ``net`` (and build what else it trains)."""
    check_method_config(cfg)
    return method_class(cfg)(cfg, net)


__all__ = ["Method", "METHOD_CLASSES", "build_method", "check_method_config", "method_class"]
