"""coRNN: Rusch & Mishra 2021, "Coupled Oscillatory Recurrent Neural Network (coRNN): An
accurate and (gradient) stable architecture for learning long time dependencies" (ICLR),
sec. 2. A network of damped, driven, coupled oscillators (their eq. 1)

    y'' = sigma(W y + W_z y' + V u + b) - gamma y - epsilon y'

written as a first-order system with z = y' (eq. 2) and discretized with step dt by the
IMEX scheme of their eq. 3:

    z_n = z_{n-1} + dt * ( sigma(W y_{n-1} + W_z z_{n-1} + V u_n + b) - gamma y_{n-1} - epsilon z_{n-1} )
    y_n = y_{n-1} + dt * z_n                                           (B, H) each, sigma = tanh

(z_n first, then y_n from the new z_n: the published code, tk-rusch/coRNN, does the same).
Their sec. 4 bounds the hidden states and shows the gradient neither explodes nor vanishes
exponentially in the lag for small dt. Knobs dt, gamma, epsilon; the defaults are the
published adding-task script's (dt 0.06, gamma 66, epsilon 15; there with 128 units,
Adam lr 2e-2, batch 50).

Both states are recurrent and both are tapped: ``state_names = ("y", "z")``, y first (the
layer's output, what the readout sees); the probe's curves are y_l0 and z_l0. z is tapped
where it is formed, before y_n reads it, so dL/dz_n is the total derivative.

Parameters as the published cell: one nn.Linear over [u, z, y] (same init: U(+-1/sqrt(D + 2H))),
read here as V (its first D columns, with b), W_z (the next H) and W (the last H). No fused
kernel: the step path is the fast path.
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check_positive
from .init import init_matrix, init_recurrent
from .base import RecurrentLayer, State, TapFn, matmul, no_tap, vector


class CoRNNLayer(RecurrentLayer):
    state_names = ("y", "z")
    population_unsupported = None  # the step path takes stacked weights (seqlab.population)
    outputs_at_steps = True  # the step loop keeps y at the loss steps only (base class)

    def __init__(self, input_size: int, hidden_size: int, dt: float = 0.06, gamma: float = 66.0,
                 epsilon: float = 15.0, init: str = "default"):
        super().__init__(input_size, hidden_size)
        self.dt = check_positive("model.layer.dt", dt)
        self.gamma = check_positive("model.layer.gamma", gamma)
        self.epsilon = check_positive("model.layer.epsilon", epsilon)
        self.i2h = nn.Linear(input_size + 2 * hidden_size, hidden_size)  # [V | W_z | W] and b
        # V as an input matrix, W_z and W as recurrent ones (identity: W_z = W = I, V torch's), as every cell's
        # init knob does; b keeps torch's. The blocks are column views of one matrix: drawn apart, copied in.
        with torch.no_grad():
            for block, init_block in zip(self.weights(), (init_matrix, init_recurrent, init_recurrent)):
                fresh = block.clone()
                init_block(fresh, init)  # checks the name; default draws nothing
                block.copy_(fresh)

    def weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """V (H, D), W_z (H, H), W (H, H): views of the one published weight matrix."""
        D, H = self.input_size, self.hidden_size
        w = self.i2h.weight  # (H, D + 2H); a population's (M, H, D + 2H)
        return w[..., :D], w[..., D:D + H], w[..., D + H:]

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        V, _, _ = self.weights()
        drive = matmul(x, V)  # (B, T, H): V u_n + b
        return drive + vector(self.i2h.bias, drive)

    def step(self, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        y, z = state
        W_zy = self.i2h.weight[..., self.input_size:]  # (H, 2H) [W_z | W]: one matmul on [z, y]
        if W_zy.dim() == 2:
            force = torch.tanh(torch.addmm(u_t, torch.cat((z, y), dim=1), W_zy.T))  # (B, H)
        else:  # a population: (M, B, H) states, each member through its own [W_z | W]
            force = torch.tanh(torch.baddbmm(u_t, torch.cat((z, y), dim=-1), W_zy.mT))  # (M, B, H)
        accel = torch.add(torch.add(force, y, alpha=-self.gamma), z, alpha=-self.epsilon)
        z = tap("z", torch.add(z, accel, alpha=self.dt))  # z + dt (sigma(.) - gamma y - epsilon z)
        y = tap("y", torch.add(y, z, alpha=self.dt))  # y + dt z_n
        return y, z
