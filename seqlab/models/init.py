"""Initialization schemes for weight matrices and gate biases.

A gated layer stores its weights as G stacked blocks (torch's layout: gates
along dim 0): W_ih is G blocks of (H, D), W_hh is G blocks of (H, H). Each
scheme is applied block by block, i.e. to every gate's own matrix, as the
papers define it for one matrix W of shape (fan_out, fan_in), and then scaled
by ``gain`` (rho):

  default     torch's own init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), left untouched
              (only multiplied by rho != 1): bit-for-bit PyTorch's default;
              for a square W the spectral radius is ~ rho/sqrt(3);
  xavier      Glorot & Bengio 2010, eq. 16: U(-a, a), a = sqrt(6 / (fan_in + fan_out)):
              Var = 2 / (fan_in + fan_out); a square W has spectral radius ~ rho (circular law);
  kaiming     He et al. 2015, eq. 10: N(0, 2 / fan_in) (the ReLU gain): a square W has
              spectral radius ~ rho * sqrt(2);
  orthogonal  W = rho * Q with Q (semi-)orthogonal (Saxe et al. 2014): every singular value is rho;
  identity    W = rho * I (IRNN, Le, Jaitly & Hinton 2015): square recurrent matrices only;
              input matrices keep torch's default under it.

Biases are never touched by these schemes (they keep torch's default,
U(-1/sqrt(fan_in), 1/sqrt(fan_in))); gate-bias inits are separate knobs.

Gate biases: ``chrono_bias`` draws b ~ log U[1, Tmax - 1] (Tallec & Ollivier
2018, "Can recurrent neural networks warp time?", sec. 4: chrono initialization,
b_f ~ log U[1, Tmax - 1], b_i = -b_f), so that the forget gate's characteristic
memory 1 / (1 - sigmoid(b_f)) ~ 1 + e^{b_f} spans [2, Tmax].

Randomness comes from the global torch RNG, which the training loop seeds
with ``cfg.seed`` just before building the model.
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check, check_choice, is_number

INITS = ("default", "xavier", "kaiming", "orthogonal", "identity")
MATRIX_INITS = ("default", "xavier", "kaiming", "orthogonal")  # for any (fan_out, fan_in) matrix


@torch.no_grad()
def init_recurrent(weight_hh: torch.Tensor, scheme: str, gain: float = 1.0) -> None:
    """Re-initialize ``weight_hh`` (G*H, H) in place, block by block, then scale by ``gain``."""
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


@torch.no_grad()
def init_matrix(weight: torch.Tensor, scheme: str, gain: float = 1.0, block_rows: int | None = None,
                key: str = "model.layer.init", gain_key: str = "model.layer.gain") -> None:
    """Re-initialize ``weight`` (G*rows, fan_in) in place, ``block_rows`` rows at a time (one gate
    block each; None = the whole matrix), by ``scheme`` (``MATRIX_INITS``, or ``identity``, which
    leaves a non-square input matrix at torch's default), then scale by ``gain``.

    ``default`` draws nothing: torch's init stays bit-for-bit (times ``gain`` if it is not 1).
    """
    check_choice(key, scheme, INITS)
    check(is_number(gain), gain_key, gain, "must be a number")
    if scheme not in ("default", "identity"):
        for block in weight.split(block_rows or weight.shape[0], dim=0):  # each (rows, fan_in)
            _BLOCK_INITS[scheme](block)
    if gain != 1.0:
        weight.mul_(gain)


_BLOCK_INITS = {
    "xavier": nn.init.xavier_uniform_,
    "kaiming": lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu"),
    "orthogonal": nn.init.orthogonal_,
    "identity": nn.init.eye_,
}


def check_chrono_tmax(tmax) -> float:
    """Tmax must exceed 2, or U[1, Tmax - 1] is empty."""
    check(is_number(tmax) and tmax > 2, "model.layer.chrono_tmax", tmax, "must be a number > 2")
    return float(tmax)


def chrono_bias(hidden_size: int, tmax: float) -> torch.Tensor:
    """(H,) biases b ~ log U[1, Tmax - 1] (chrono initialization, Tallec & Ollivier 2018)."""
    tmax = check_chrono_tmax(tmax)
    return torch.log(1 + (tmax - 2) * torch.rand(hidden_size))  # in [0, log(Tmax - 1))


def set_gate_bias(bias_ih: torch.Tensor, bias_hh: torch.Tensor, gate: int, hidden_size: int,
                  value: torch.Tensor | float) -> None:
    """Make the total bias b_ih + b_hh of gate block ``gate`` equal ``value`` (its b_hh part zeroed)."""
    block = slice(gate * hidden_size, (gate + 1) * hidden_size)
    with torch.no_grad():
        bias_hh[block].zero_()
        bias_ih[block].copy_(torch.as_tensor(value, dtype=bias_ih.dtype).expand(hidden_size))
