"""``decseg summary``: parameters per module and output shapes for the configured size."""
from __future__ import annotations

import argparse
import json

from decseg.cli.main import add_config_args


def add_parser(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the summary as JSON")
    p.add_argument("--batch", type=int, default=2, help="batch size of the shape-check forward (default 2)")


def build_summary(cfg, batch: int = 2) -> dict:
    """Build the network of ``cfg``, count its parameters and run one eval forward for shapes."""
    import torch

    from decseg.models import build_generators, build_model, count_parameters, parameter_breakdown

    net = build_model(cfg).eval()
    gens = build_generators(cfg)
    counts = parameter_breakdown(net, gens)
    size = cfg.data.size
    x = torch.zeros(batch, cfg.data.channels, size, size)
    with torch.inference_mode():
        feats = net.encoder(x)
        o1, o2, o3 = net(x)
    shape = lambda t: None if t is None else list(t.shape)  # noqa: E731
    return {
        "encoder": cfg.model.encoder,
        "pretrained": cfg.model.pretrained,
        "switches": {"cfa": cfg.model.cfa, "sc": cfg.model.sc, "dcf": cfg.model.dcf},
        "size": size,
        "half_size": net.half_size(size) if cfg.model.sc else None,
        "total_params": count_parameters(net),
        "generator_params": counts["generators"],
        "modules": {k: v for k, v in counts.items() if k not in ("total", "generator_each")},
        "encoder_channels": list(net.encoder.channels),
        "encoder_shapes": [shape(f) for f in feats],
        "output_shapes": {"full": shape(o1), "half": shape(o2), "fused": shape(o3)},
        "prediction": "fused" if o3 is not None else "full",
    }


def _print(s: dict) -> None:
    sw = ", ".join(f"{k}={'on' if v else 'off'}" for k, v in s["switches"].items())
    print(f"DEC-Seg network: encoder {s['encoder']} ({sw}), input {s['size']} px"
          + (f", half scale {s['half_size']} px" if s["half_size"] else ""))
    rows = []
    modules = s["modules"]
    for name, value in modules.items():
        if isinstance(value, dict) or name == "generators":
            continue
        rows.append((name, value))
        rows += [(f"  {k}", v) for k, v in modules.get(f"{name}_levels", {}).items()]
    rows += [("total (network)", s["total_params"]), ("generators (training only)", s["generator_params"])]
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'module'.ljust(width)}{'parameters':>14}")
    for name, n in rows:
        print(f"{name.ljust(width)}{n:>14,}")
    print("output shapes:")
    for name, shp in s["output_shapes"].items():
        print(f"  {name:<6} {'off' if shp is None else 'x'.join(map(str, shp))}")
    print(f"prediction: {s['prediction']}")


def run(args: argparse.Namespace) -> int:
    from decseg.config import load_config
    from decseg.errors import ConfigError
    from decseg.io import atomic_write_text

    if args.batch < 1:
        raise ConfigError(f"--batch={args.batch} must be >= 1")
    cfg = load_config(args.config, args.overrides)
    summary = build_summary(cfg, args.batch)
    _print(summary)
    if args.json:
        try:
            atomic_write_text(args.json, json.dumps(summary, indent=2) + "\n")
        except OSError as e:  # a file where a folder should be, no permission, full disk
            raise ConfigError(f"--json {args.json}: cannot write it ({e.strerror or e}); choose another path") from None
        print(f"wrote {args.json}")
    return 0
