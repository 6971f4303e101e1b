"""Initialization schemes for recurrent weight matrices.

A gated layer stores its recurrent weights as G stacked (H, H) blocks (torch's
layout: gates along dim 0). Each scheme is applied block by block, so
``orthogonal`` with gain rho gives W_hh = rho * Q for every gate, and
``identity`` gives rho * I (IRNN, Le, Jaitly & Hinton 2015).
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check, check_choice, is_number

INITS = ("default", "orthogonal", "identity")


@torch.no_grad()
def init_recurrent(weight_hh: torch.Tensor, scheme: str, gain: float = 1.0) -> None:
    """Re-initialize ``weight_hh`` (G*H, H) in place, block by block."""
    check_choice("model.layer.init", scheme, INITS)
    check(is_number(gain), "model.layer.recurrent_gain", gain, "must be a number")
    if scheme == "default":
        if gain != 1.0:
            weight_hh.mul_(gain)
        return
    H = weight_hh.shape[1]
    for block in weight_hh.split(H, dim=0):  # each (H, H)
        _BLOCK_INITS[scheme](block)
        block.mul_(gain)


_BLOCK_INITS = {
    "orthogonal": nn.init.orthogonal_,
    "identity": nn.init.eye_,
}
