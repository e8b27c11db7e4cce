"""Experimental training-step levers, measured on top of the trainer's step.

These are kept out of the package: ``concat_passes`` changes the mathematics (BatchNorm sees
the clean and perturbed passes as one batch), and the optimizer variants only serve to compare
against the fused SGD the trainer uses. The levers that paid off are config keys
(train.conv_weight_grad, train.optimizer_in_backward, train.channels_last, train.cpu_memory).

    python benchmarks/levers.py --lever concat_passes --set data.size=224 [--steps 3] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LEVERS = {
    "sgd_foreach": "torch.optim.SGD(foreach=True): one multi-tensor kernel per op over all params",
    "sgd_loop": "torch.optim.SGD(foreach=False, fused=False): the per-parameter loop (the released way)",
    # this one CHANGES the mathematics: BatchNorm sees 1.5x the batch in one pass
    "concat_passes": "clean and perturbed passes as one forward of cat[x, x_p(u)] (changes BN stats)",
}
SGD_LEVERS = {"sgd_foreach": {"foreach": True}, "sgd_loop": {"foreach": False, "fused": False}}


class ConcatPasses(torch.nn.Module):
    """Experimental lever that changes the mathematics: the method's clean pass on
    cat[labeled, unlabeled] and its perturbed pass on the unlabeled views run as ONE forward of
    cat[clean, perturbed], so BatchNorm normalises over both passes together. The method's code
    is unchanged: the first call computes both, the second call returns the cached half.
    """

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net
        self._pending: tuple | None = None
        self._cached: tuple | None = None

    def prime(self, x_p: torch.Tensor, x_half_p: torch.Tensor) -> None:
        """Announce the perturbed views of this step before the clean pass runs."""
        self._pending, self._cached = (x_p, x_half_p), None

    def forward(self, x, x_half=None):
        if self._cached is not None and x is self._cached[0]:
            out, self._cached = self._cached[1], None
            return out
        if self._pending is None:
            return self.net(x, x_half)
        (x_p, x_half_p), self._pending = self._pending, None
        n = x.shape[0]
        out = self.net(torch.cat([x, x_p]), torch.cat([x_half, x_half_p]))
        self._cached = (x_p, tuple(None if o is None else o[n:] for o in out))
        return tuple(None if o is None else o[:n] for o in out)


def lever_adjustment(levers: list[str], cfg):
    """An ``adjust(parts)`` for ``decseg.cli.benchmarking.build_train_step`` applying ``levers``."""
    from decseg.errors import ConfigError

    unknown = [lv for lv in levers if lv not in LEVERS]
    if unknown:
        raise ConfigError(f"unknown lever(s) {', '.join(unknown)}; known: {', '.join(LEVERS)}")
    sgd = [lv for lv in levers if lv in SGD_LEVERS]
    if len(sgd) > 1:
        raise ConfigError(f"choose at most one optimizer lever, got {', '.join(sgd)}")
    t = cfg.train

    def adjust(parts):
        if sgd:
            if parts.plan.optimizer_in_backward:
                raise ConfigError(f"the {sgd[0]} lever replaces the optimizer; run it with "
                                  f"--set train.optimizer_in_backward=false")
            params = [p for g in parts.optimizer.param_groups for p in g["params"]]
            parts.optimizer = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum,
                                              weight_decay=t.weight_decay, **SGD_LEVERS[sgd[0]])
        if "concat_passes" not in levers:
            return None
        concat = ConcatPasses(parts.method.net)
        parts.method.net = concat

        def before_step(labeled, unlabeled):
            if unlabeled is not None:
                concat.prime(unlabeled["image_p"], unlabeled["image_half_p"])

        return before_step

    return adjust


def main(argv=None) -> int:
    from decseg import load_config
    from decseg.cli import benchmarking as bench
    from decseg.cli.main import add_config_args

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lever", action="append", required=True, choices=sorted(LEVERS))
    add_config_args(p)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    cfg = load_config(a.config, a.overrides)
    result = bench.benchmark_train(cfg, a.steps, a.warmup, adjust=lever_adjustment(a.lever, cfg),
                                   profile="+".join(["project", *a.lever]))
    result["levers"] = a.lever
    print(f"train step with {'+'.join(a.lever)}: {result['step_seconds']:.3f} s; "
          f"peak RSS {result.get('peak_rss_gb', float('nan')):.2f} GB")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
