"""``decseg`` entry point: one sub-module per command, each with ``add_parser`` and ``run``.

Sub-modules import torch and friends inside ``run`` so that ``decseg --help`` stays fast.
Errors derived from DecsegError, and faults of the environment (a full disk, a file-size limit,
permissions, memory: ``decseg.errors.environment_error``), are printed as one message with exit
status 2; anything else is a bug (exit 1). The traceback is shown only with ``--debug``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from decseg import __version__
from decseg.errors import DecsegError, environment_error

COMMANDS = [
    ("synth", "generate a synthetic lesion dataset"),
    ("prepare", "build the dataset layout from a public benchmark download"),
    ("train", "train DEC-Seg or a baseline"),
    ("predict", "write prediction maps from a checkpoint"),
    ("evaluate", "toolbox-exact binary metrics, per-class and per-volume metrics of predictions"),
    ("summary", "parameters per module and output shapes"),
    ("benchmark", "training step time / inference throughput and peak memory"),
    ("compare", "methods x label ratios x seeds under one protocol, with a report"),
    ("demo", "the whole method end to end on synthetic data, with a report"),
    ("export", "export the inference network to ONNX, or a model folder to share (--hf)"),
]


def add_set_arg(p: argparse.ArgumentParser,
                help: str = "override config keys, e.g. --set model.encoder=resnet18 train.amp=off") -> None:
    """``--set KEY=VALUE ...``: several values after one flag, or the flag repeated (into ``overrides``)."""
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help=f"{help} (several after one flag, or the flag repeated)")


def add_config_args(p: argparse.ArgumentParser) -> None:
    """The shared ``--config`` / ``--set key=value`` options."""
    p.add_argument("--config", default=None, help="YAML file or preset name (polyp, isic2018, lgg, acdc)")
    add_set_arg(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="decseg", description="DEC-Seg semi-supervised medical image segmentation toolkit")
    parser.add_argument("--version", action="version", version=f"decseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS:
        mod = importlib.import_module(f"decseg.cli.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        mod.add_parser(p)
        p.set_defaults(_run=mod.run)
    return parser


def _output_of(args: argparse.Namespace) -> str | None:
    """The command's output option as ``"--out PATH"``, named when a write error carries no path."""
    for option in ("out", "onnx", "hf", "json"):
        value = getattr(args, option, None)
        if isinstance(value, str) and value:
            return f"--{option} {value}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        rc = args._run(args)
        return int(rc or 0)
    except DecsegError as e:
        if args.debug:
            traceback.print_exc()
        print(f"decseg {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"decseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # the machine's fault (exit 2), or an unexpected failure (exit 1)
        fault = environment_error(e, writing=_output_of(args))
        if fault is not None:
            if args.debug:
                traceback.print_exc()
            print(f"decseg {args.command}: error: {fault}", file=sys.stderr)
            return fault.exit_code
        if args.debug:
            traceback.print_exc()
        else:
            print(f"decseg {args.command}: unexpected {type(e).__name__}: {e}\n"
                  f"(run again with --debug for the traceback, and please report it)", file=sys.stderr)
        return 1
