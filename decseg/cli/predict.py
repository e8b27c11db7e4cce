"""``decseg predict``: prediction maps (PNG, original size) for every test set or a folder.

Binary models write 0/255 maps; models of K > 2 classes write palette PNGs of the class indices
(docs/PREDICT.md)."""
from __future__ import annotations

import argparse

from decseg.cli.main import add_set_arg


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="a .pt file written by decseg train, a folder written by decseg export --hf, or the "
                        "hub id OWNER/NAME of an uploaded one")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="dataset folder: predicts every DATA/test/SET -> PRED/SET/ID.png")
    src.add_argument("--images", help="a folder of images: predicts them -> PRED/<folder name>/ID.png")
    p.add_argument("--out", required=True, help="output folder PRED (must not exist or be empty)")
    p.add_argument("--soft", action="store_true",
                   help="write the lesion probability as 0-255 instead of the binary 0/255 map; with "
                        "K > 2 classes, one map per class: PRED/SET/ID_class{k}.png (P(class k), 0-255)")
    p.add_argument("--overlay", action="store_true",
                   help="also write outline pictures to PRED_overlay/SET/ID.png (beside PRED)")
    p.add_argument("--tta", action="store_true", default=None,
                   help="horizontal-flip test-time augmentation (default: predict.tta)")
    p.add_argument("--amp", choices=["bf16", "off"], default=None,
                   help="bf16 autocast (default: predict.amp)")
    p.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default: predict.batch_size)")
    p.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, default=None, help="data loader workers (default: data.num_workers)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    # No --config: the network and its preprocessing come from the checkpoint.
    add_set_arg(p, help="override predict.* or data.num_workers keys, e.g. --set predict.batch_size=4")


def run(args: argparse.Namespace) -> int:
    from decseg.files import check_output
    from decseg.inference.predictor import predict_checkpoint, tqdm_progress

    check_output(args.out, "--out")  # PRED_overlay goes beside it, in the same folder
    progress = tqdm_progress()
    try:
        result = predict_checkpoint(
            args.checkpoint, args.out, data=args.data, images=args.images, soft=args.soft,
            overlay=args.overlay, tta=args.tta, amp=args.amp, batch_size=args.batch_size,
            device=args.device, overrides=args.overrides, num_workers=args.workers,
            overwrite=args.overwrite, progress=progress,
        )
    finally:
        progress.close()  # an error then starts on a line of its own, not after a bar
    total = sum(result["sets"].values())
    sets = ", ".join(f"{k} ({v})" for k, v in result["sets"].items())
    kind = "binary" if result.get("classes", 2) == 2 else f"class-index ({result['classes']} classes)"
    kind = "probability" if args.soft else kind
    print(f"wrote {total} {kind} maps to {result['out']}: {sets}")
    if result["overlay"]:
        print(f"overlays in {result['overlay']}")
    return 0
