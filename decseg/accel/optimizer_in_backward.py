"""SGD applied during backward: the optimizer's memory-saving mode.

``train.optimizer_in_backward`` (``auto``: on for a single process without fp16): each
parameter receives torch.optim.SGD's own update (``torch.optim.sgd.sgd`` on that one parameter,
with its group's lr, momentum, weight decay) the moment backward has accumulated its gradient,
and the gradient is freed at once. The full set of gradients (1.7 GB for the paper model) then
never exists at the same time. SGD updates every parameter independently, so the result is
identical to ``loss.backward(); optimizer.step()``; the optimizer object, its state dict and
resume are unchanged, only the time of each update moves.

A parameter's accumulate-grad hook runs after every use of it in the graph has contributed
(autograd sums the contributions before accumulating), so no later backward node reads a
weight that was already updated.

It cannot be used with a GradScaler (fp16: the scaler must see every gradient before any
update) or DDP (gradients are all-reduced in buckets after backward); ``auto`` turns it off
there.
"""
from __future__ import annotations

import torch
from torch.optim.sgd import sgd


class SGDInBackward:
    """Runs ``optimizer``'s update per parameter during backward while ``armed``.

    Outside ``armed`` the hooks do nothing, so any other backward (tests, user code) leaves
    gradients in ``.grad`` as usual.
    """

    def __init__(self, optimizer: torch.optim.SGD):
        if not isinstance(optimizer, torch.optim.SGD):
            raise TypeError("SGDInBackward works with torch.optim.SGD")
        self.optimizer = optimizer
        self.armed = False
        # group index, not the dict: load_state_dict replaces the group dicts
        self._group_index = {}
        for i, group in enumerate(optimizer.param_groups):
            for p in group["params"]:
                self._group_index[p] = i
                p.register_post_accumulate_grad_hook(self._update)

    @torch.no_grad()
    def _update(self, p: torch.Tensor) -> None:
        if not self.armed or p.grad is None:
            return
        g = self.optimizer.param_groups[self._group_index[p]]
        state = self.optimizer.state[p]
        bufs = [state.get("momentum_buffer")]
        sgd([p], [p.grad], bufs, foreach=False, fused=g["fused"], weight_decay=g["weight_decay"],
            momentum=g["momentum"], lr=g["lr"], dampening=g["dampening"], nesterov=g["nesterov"],
            maximize=g["maximize"])
        if g["momentum"] != 0:
            state["momentum_buffer"] = bufs[0]
        p.grad = None

    def backward_and_step(self, loss: torch.Tensor) -> None:
        self.armed = True
        try:
            loss.backward()
        finally:
            self.armed = False
