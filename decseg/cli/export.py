"""``decseg export``: the inference network as ONNX (checked with onnxruntime), or as a Hugging
Face style folder (model.safetensors, config.json, a model card)."""
from __future__ import annotations

import argparse
import sys

ONNX_ONLY = ("size", "opset", "tolerance", "dynamo")
HF_ONLY = ("data", "metrics", "license", "overwrite")


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="a .pt file written by decseg train, or a folder written by --hf (or its hub id)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--onnx", help="output .onnx file (written atomically)")
    target.add_argument("--hf", metavar="DIR",
                        help="output folder with model.safetensors, config.json and README.md (a model card), "
                             "written atomically; upload it with huggingface_hub's upload_folder")
    onnx = p.add_argument_group("--onnx options")
    onnx.add_argument("--size", type=int, default=None, help="input size S (default: the checkpoint's data.size)")
    onnx.add_argument("--opset", type=int, default=None,
                      help="ONNX opset version (default 17, with --dynamo 18); checked first against the "
                           "range the installed torch exports (torch 2.14: 11-20, with --dynamo 18-23)")
    onnx.add_argument("--tolerance", type=float, default=None,
                      help="max |onnxruntime - PyTorch| allowed, relative to max |logit| (default 1e-3)")
    onnx.add_argument("--dynamo", action="store_true", default=None,
                      help="use torch's dynamo-based exporter instead of the TorchScript one (slower)")
    hf = p.add_argument_group("--hf options")
    hf.add_argument("--data", default=None,
                    help="the training dataset folder, described in the model card (counts, split, seed); "
                         "the checkpoint does not record where its data lay")
    hf.add_argument("--metrics", default=None, metavar="JSON",
                    help="test metrics for the model card: the --json file of decseg evaluate")
    hf.add_argument("--license", default=None, help="license id for the card's front matter (default: other)")
    hf.add_argument("--overwrite", action="store_true", default=None,
                    help="replace an earlier export in DIR (a folder holding anything else is refused)")


def _refuse_other_options(args: argparse.Namespace, names: tuple[str, ...], target: str) -> None:
    from decseg.errors import ConfigError

    given = [f"--{n}" for n in names if getattr(args, n) is not None]
    if given:
        one = len(given) == 1
        raise ConfigError(f"{', '.join(given)} {'applies' if one else 'apply'} to "
                          f"{'--hf' if target == '--onnx' else '--onnx'} only, not to {target}; "
                          f"drop {'it' if one else 'them'}")


def run(args: argparse.Namespace) -> int:
    if args.hf is not None:
        return _run_hf(args)
    from decseg.files import check_output
    from decseg.inference.export import export_onnx

    _refuse_other_options(args, HF_ONLY, "--onnx")
    check_output(args.onnx, "--onnx", kind="file", example="model.onnx")
    info = export_onnx(args.checkpoint, args.onnx, size=args.size, opset=args.opset,
                       tolerance=1e-3 if args.tolerance is None else args.tolerance, dynamo=bool(args.dynamo))
    print(f"wrote {info['onnx']} ({info['bytes'] / 2**20:.1f} MiB, opset {info['opset']}, {info['exporter']} "
          f"exporter): input 'image' "
          f"B x {info['channels']} x {info['size']} x {info['size']} in [0, 1] -> output 'logits' "
          f"B x {info['classes']} x {info['size']} x {info['size']}")
    print(f"onnxruntime vs PyTorch: max |diff| {info['max_abs_diff']:.3g} (logit scale {info['logit_scale']:.3g})")
    return 0


def _run_hf(args: argparse.Namespace) -> int:
    from decseg.inference.hub import export_hf

    _refuse_other_options(args, ONNX_ONLY, "--hf")
    info = export_hf(args.checkpoint, args.hf, data=args.data, metrics=args.metrics,
                     license=args.license or "other", overwrite=bool(args.overwrite))
    print(f"wrote {info['out']}: model.safetensors ({info['tensors']} tensors, {info['parameters']:,} parameters, "
          f"{info['bytes'] / 2**20:.1f} MiB), config.json, README.md")
    if not info["dataset"]:
        print("note: no --data given: the model card names the dataset from the config but gives no counts "
              "or split", file=sys.stderr)
    return 0
