"""Released-style reference: the same model and mathematics, run the way the released code runs.

The authors' implementation (PyTorch 1.9; docs/METHOD.md) trains like this, and this
script does the same so that the project's step can be compared side by side on one machine:

- strict fp32 everywhere: no autocast, TF32 off;
- contiguous NCHW model weights and inputs (no channels_last);
- ``optimizer.zero_grad()`` with PyTorch 1.9's behaviour: gradients stay allocated and are
  zeroed in place (``set_to_none=False``), so their memory is held across steps;
- ``torch.optim.SGD`` with the per-parameter loop (``foreach=False``, not fused);
- the clean pass on cat[labeled, unlabeled] and the perturbed pass on the unlabeled part
  as two separate forward calls;
- no activation checkpointing, no torch.compile;
- inference: fp32, NCHW, ``torch.no_grad``, one image per forward.

The losses are written out here directly from docs/METHOD.md, "Objective" (not imported from
``decseg.losses``), which also makes this file an independent check of the project's method:
``tests/cli/test_benchmark.py`` asserts that both give the same loss.

Usage (one configuration per process, so the peak RSS is this configuration's):
    python benchmarks/released_style.py train --size 224 --batch-labeled 2 --batch-unlabeled 2 \
        --set model.pretrained=false --json released_224_4.json
    python benchmarks/released_style.py predict --size 352 --set model.pretrained=false
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch
import torch.nn.functional as F

from decseg.config import Config, load_config
from decseg.accel.device import resolve_device
from decseg.cli import benchmarking as bench
from decseg.cli.main import add_config_args

# ----------------------------------------------------------------- losses (docs/METHOD.md, "Objective")


def dice_loss(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per class 1 - (2 sum(s t) + 1e-5) / (sum s^2 + sum t^2 + 1e-5) over the batch; class mean."""
    losses = []
    for c in range(probs.shape[1]):
        s = probs[:, c]
        t = (target == c).float()
        losses.append(1 - (2 * (s * t).sum() + 1e-5) / ((s * s).sum() + (t * t).sum() + 1e-5))
    return sum(losses) / len(losses)


def sup_term(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.cross_entropy(logits, target) + dice_loss(F.softmax(logits, dim=1), target))


def up(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)


def released_losses(net, generators, lab: dict, unl: dict, lam: float = 1.0) -> dict:
    """L = L_sup + lam * (L_sc + L_spc + L_cc) for the full DEC-Seg configuration."""
    nl = lab["image"].shape[0]
    S = lab["image"].shape[-1]
    x = torch.cat([lab["image"], unl["image"]], 0)
    xh = torch.cat([lab["image_half"], unl["image_half"]], 0)
    o1, o2, o3 = net(x, xh)  # clean pass, whole batch
    p1, p2, p3 = net(unl["image_p"], unl["image_half_p"])  # perturbed pass, unlabeled only
    y, yh = lab["mask"], lab["mask_half"]
    sup = sup_term(o1[:nl], y) + sup_term(o2[:nl], yh) + sup_term(o3[:nl], y)
    s1, s2, s3 = F.softmax(o1, 1), F.softmax(o2, 1), F.softmax(o3, 1)
    q1, q2, q3 = F.softmax(p1, 1), F.softmax(p2, 1), F.softmax(p3, 1)
    sc = (F.mse_loss(s1[:nl], up(s2[:nl], S)) + F.mse_loss(s1[nl:], up(s2[nl:], S))
          + F.mse_loss(q1, up(q2, S)))
    spc = F.mse_loss(s1[nl:], q1) + F.mse_loss(s2[nl:], q2) + F.mse_loss(s3[nl:], q3)
    cc = (F.mse_loss(generators[0](o3[nl:]), unl["image_p"])
          + F.mse_loss(generators[1](p3), unl["image"]))
    loss = sup + lam * (sc + spc + cc)
    return {"loss": loss, "sup": sup.detach(), "sc": sc.detach(), "spc": spc.detach(), "cc": cc.detach()}


# ----------------------------------------------------------------- the step


def check_full_model(cfg: Config) -> None:
    m, t = cfg.model, cfg.train
    if not (m.sc and m.dcf and t.semi and t.spc and t.cc and t.method == "decseg"):
        raise SystemExit("released_style.py emulates the full DEC-Seg configuration only "
                         "(model.sc/dcf, train.semi/spc/cc all true, train.method=decseg)")
    if t.batch_unlabeled < 2 or t.batch_labeled < 1:
        raise SystemExit("need train.batch_labeled >= 1 and train.batch_unlabeled >= 2 (BatchNorm)")


def build_released_step(cfg: Config, device: torch.device, seed: int = 0):
    """(step, state): ``step()`` runs one released-style iteration; ``state`` holds the parts."""
    from decseg.models import build_generators, build_model
    from decseg.io import seed_everything

    check_full_model(cfg)
    seed_everything(seed)
    net = build_model(cfg).to(device).train()
    generators = build_generators(cfg).to(device).train()
    params = list(net.parameters()) + list(generators.parameters())
    t = cfg.train
    optimizer = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                                foreach=False)
    lab = bench.synthetic_batch(cfg, t.batch_labeled, True, device, seed)
    unl = bench.synthetic_batch(cfg, t.batch_unlabeled, False, device, seed + 1)
    state = {"net": net, "generators": generators, "optimizer": optimizer, "it": 0, "losses": {},
             "labeled": lab, "unlabeled": unl}

    def step() -> None:
        it = state["it"]
        for group in optimizer.param_groups:  # poly decay, set by hand each iteration
            group["lr"] = t.lr * (1 - it / t.iterations) ** t.poly_power
        optimizer.zero_grad(set_to_none=False)  # PyTorch 1.9 default: zero in place, keep memory
        losses = released_losses(net, generators, lab, unl, t.consistency)
        losses["loss"].backward()
        optimizer.step()
        state["losses"] = losses
        state["it"] = it + 1

    return step, state


def benchmark_released_train(cfg: Config, steps: int, warmup: int, device: torch.device) -> dict:
    with bench.strict_fp32():
        step, state = build_released_step(cfg, device)
        timing = bench.measure(step, steps, warmup, device)
    echo = bench.config_echo(cfg, device)
    echo.update(amp="off", channels_last=False, checkpointing=False, compile=False)
    return {"kind": "train", "profile": "released", **timing.summary(), "steps": steps,
            "warmup": warmup, "loss": float(state["losses"]["loss"].detach()), **echo}


def benchmark_released_predict(cfg: Config, batch_size: int, steps: int, warmup: int,
                               device: torch.device) -> dict:
    from decseg.models import build_model

    with bench.strict_fp32():
        net = build_model(cfg).to(device).eval()
        x = bench.synthetic_images(cfg, batch_size).to(device)
        s = cfg.data.half_size
        xh = F.interpolate(x, size=(s, s), mode="nearest")  # released: nearest resizing

        def forward() -> None:
            with torch.no_grad():
                net(x, xh)

        timing = bench.measure(forward, steps, warmup, device)
    return {"kind": "predict", "profile": "released",
            "images_per_second": batch_size / statistics.median(timing.seconds),
            "batch_size": batch_size, **timing.summary(), "steps": steps, "warmup": warmup,
            "size": cfg.data.size, "amp": "off", "channels_last": False,
            "encoder": cfg.model.encoder, **bench.environment(device)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("train", "predict"))
    add_config_args(p)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--batch-labeled", type=int, default=None)
    p.add_argument("--batch-unlabeled", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=1, help="predict: images per forward (released: 1)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    overrides = list(args.overrides)
    for key, value in (("data.size", args.size), ("train.batch_labeled", args.batch_labeled),
                       ("train.batch_unlabeled", args.batch_unlabeled)):
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(args.config, overrides)
    device = resolve_device(args.device)
    if args.what == "train":
        result = benchmark_released_train(cfg, args.steps, args.warmup, device)
        print(f"released-style train step: {result['step_seconds']:.3f} s; "
              f"peak RSS {result['peak_rss_gb']:.2f} GB")
    else:
        result = benchmark_released_predict(cfg, args.batch_size, args.steps, args.warmup, device)
        print(f"released-style predict: {result['images_per_second']:.3f} images/s "
              f"({result['step_seconds']:.3f} s per forward of {args.batch_size})")
    if args.json:
        from decseg.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
