"""Learning speed per layer during training: gradient norms and update-to-weight ratios.

"Early layers learn slowly" (Nielsen, ch. 5) as a measured curve: on every logged step
the training loop gets, for every parameter group g of ``parameter_groups`` ('l0', 'l1',
... for the layers, 'readout', ...):

  train/grad_norm/{g}     ||dL/dtheta_g|| of that step's training batch, before clipping
                          (the groups add in quadrature to the step's global pre-clip norm)
  train/update_ratio/{g}  ||theta_g after - theta_g before|| / ||theta_g before|| of that
                          step's update (the optimizer's step, clipping and any projection
                          included): how fast the layer moves (~1e-3 is the usual rule of thumb)
  train/weight_norm/{g}   ||theta_g|| after the update

These are one step's values at the log step, not window means (``train/grad_norm``, the
global pre-clip norm, stays the mean over the log window, as before). The loop calls
``measure`` once per step, after the backward and before clipping; the update half is
filled in by an optimizer step hook. Measured cost: see docs/probe.md (a few parameter
copies and norms on logged steps only; nothing on the others).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .gradient import parameter_groups

PREFIXES = ("train/grad_norm/", "train/update_ratio/", "train/weight_norm/")


def _group_norms(tensors: list[torch.Tensor], sizes: list[int]) -> list[float]:
    """Norm of each consecutive group of ``sizes`` tensors (float64 sums of squares)."""
    if not tensors:
        return []
    norms = torch.stack(torch._foreach_norm([t.detach() for t in tensors])).double()  # one norm per tensor
    out, i = [], 0
    for n in sizes:
        out.append(float(torch.linalg.vector_norm(norms[i:i + n])))
        i += n
    return out


class LayerStats:
    """Per-group gradient norms and update ratios on the steps where ``due(step)`` is true."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, due: Callable[[int], bool]):
        groups = parameter_groups(model)
        self.names = list(groups)
        self.sizes = [len(ps) for ps in groups.values()]
        self.params = [p for ps in groups.values() for p in ps]
        self.due = due
        self.row: dict[str, float] = {}
        self._before: list[torch.Tensor] | None = None
        optimizer.register_step_post_hook(self._after_update)

    def measure(self, step: int) -> dict[str, float]:
        """Call after ``loss.backward()``, before clipping. On a due step: the raw per-group gradient
        norms now, the update ratios once the optimizer has stepped; ``self.row`` holds them (empty
        on other steps)."""
        self.row = {}
        self._before = None
        if not self.due(step):
            return self.row
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        for name, value in zip(self.names, _group_norms(grads, self.sizes)):
            self.row[f"train/grad_norm/{name}"] = value
        self._before = [p.detach().clone() for p in self.params]
        return self.row

    def _after_update(self, optimizer, args, kwargs) -> None:
        if self._before is None:
            return
        before, self._before = self._before, None
        with torch.no_grad():
            delta = torch._foreach_sub([p.detach() for p in self.params], before)
        for name, d, w0, w1 in zip(self.names, _group_norms(delta, self.sizes), _group_norms(before, self.sizes),
                                   _group_norms(self.params, self.sizes)):
            self.row[f"train/update_ratio/{name}"] = d / w0 if w0 > 0 else float("nan")
            self.row[f"train/weight_norm/{name}"] = w1
