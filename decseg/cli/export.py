"""``decseg export``: the inference network as ONNX, checked against PyTorch with onnxruntime."""
from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a .pt file written by decseg train")
    p.add_argument("--onnx", required=True, help="output .onnx file (written atomically)")
    p.add_argument("--size", type=int, default=None, help="input size S (default: the checkpoint's data.size)")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset version (default 17, with --dynamo 18); checked first against the "
                        "range the installed torch exports (torch 2.14: 11-20, with --dynamo 18-23)")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="max |onnxruntime - PyTorch| allowed, relative to max |logit| (default 1e-3)")
    p.add_argument("--dynamo", action="store_true",
                   help="use torch's dynamo-based exporter instead of the TorchScript one (slower)")


def run(args: argparse.Namespace) -> int:
    from decseg.files import check_output
    from decseg.inference.export import export_onnx

    check_output(args.onnx, "--onnx", kind="file", example="model.onnx")
    info = export_onnx(args.checkpoint, args.onnx, size=args.size, opset=args.opset,
                       tolerance=args.tolerance, dynamo=args.dynamo)
    print(f"wrote {info['onnx']} ({info['bytes'] / 2**20:.1f} MiB, opset {info['opset']}, {info['exporter']} "
          f"exporter): input 'image' "
          f"B x {info['channels']} x {info['size']} x {info['size']} in [0, 1] -> output 'logits' "
          f"B x {info['classes']} x {info['size']} x {info['size']}")
    print(f"onnxruntime vs PyTorch: max |diff| {info['max_abs_diff']:.3g} (logit scale {info['logit_scale']:.3g})")
    return 0
