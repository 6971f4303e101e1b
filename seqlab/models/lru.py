"""Linear Recurrent Unit (LRU): Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De
2023, "Resurrecting Recurrent Neural Networks for Long Sequences", sec. 3:

    x_t = diag(lambda) x_{t-1} + gamma * (B v_t)          (complex, N modes)
    lambda_j = exp(-exp(nu_j) + i exp(theta_j))           (stable exponential parametrization)
    gamma_j = sqrt(1 - |lambda_j|^2)  at init (normalization; learned as log gamma)

|lambda_j| = exp(-exp(nu_j)) < 1 for every real nu_j, so the recurrence is
stable by construction, whatever the optimizer does. Init (the paper's): |lambda|
uniform on the ring [r_min, r_max] (nu = log(-log(U[r_min^2, r_max^2]) / 2)),
phase theta ~ U[0, max_phase]; B complex Gaussian with variance 1/(2H) per part.

How it fits the lab's layer interface (our choices, not the paper's):
  * The state. N = H/2 complex modes are stored as one real state
    h_t = [Re x_t | Im x_t] (B, H), which is also the layer's output. The tap on
    h perturbs both halves; dh_t/dh_{t-1} is the real 2N x 2N form of
    diag(lambda), whose singular values are |lambda_j| (each twice), so the probe
    sees ||dL/dh_{t-k}|| shrink at most like max|lambda|^k and a Lyapunov
    spectrum (via ``step``) is {log|lambda_j|}, each twice. H must be even.
  * The output map. The paper's y_t = Re(C x_t) + D v_t is linear in
    [Re x_t | Im x_t] (Re(C x) = C_re Re x - C_im Im x), so the next layer's input
    matrix or the readout plays C; D's skip is ``model.residual``.
  * The nonlinearity. The paper alternates LRUs with position-wise MLPs; here
    each layer starts with one, v_t = act(W u_t + b) (H units), so a stack reads
    act -> LRU -> act -> LRU -> readout. With ``activation: identity`` the layer is
    purely linear (cannot solve the adding problem; useful for analytic checks).

Fast path: the recurrence is linear with a constant diagonal, so all x_t come
from a Hillis-Steele scan in ceil(log2 T) vectorized passes, x_t += lambda^k x_{t-k}
for k = 1, 2, 4, ... (only powers of |lambda| < 1 appear, so it is as stable as
the loop); a test holds ``scan`` equal to the step path. The knob ``scan`` picks the
path of ``forward``: loop (the step path) | parallel (that scan) | chunked (the
two-level scan of seqlab.models.scan on complex coefficients) | auto, the fastest
measured for the device (benchmarks/scan_paths.py; docs/benchmarks.md, "Recurrences on their
fastest path"): the loop on CPU, where the scan's T log T work loses.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..checks import check, check_choice, is_number
from .activations import ACTIVATIONS
from . import scan as scanlib
from .base import RecurrentLayer, State, TapFn, linear, matmul, no_tap, vector
from .init import MATRIX_INITS, init_matrix

_TINY = 1e-7  # keeps log() of the uniform draws finite


class LRULayer(RecurrentLayer):
    population_unsupported = None  # the step path takes stacked weights (seqlab.population)
    # scan: auto -> the fastest measured (H100: the parallel scan at T = 200, 1000, chunked at 5000)
    auto = {"cpu": ((math.inf, "loop"),), "cuda": ((2000, "parallel"), (math.inf, "chunked"))}

    def __init__(self, input_size: int, hidden_size: int, r_min: float = 0.9, r_max: float = 0.999,
                 max_phase: float = 2 * math.pi, activation: str = "gelu", scan: str = "auto",
                 chunk: int | None = None, init: str = "default"):
        super().__init__(input_size, hidden_size)
        scanlib.check_scan(scan, chunk, scanlib.LINEAR)
        self.scan_choice, self.chunk = scan, chunk
        check(hidden_size % 2 == 0, "model.hidden_size", hidden_size,
              "must be even for lru (H/2 complex modes, stored as real and imaginary halves)")
        check(is_number(r_min) and 0 <= r_min < 1, "model.layer.r_min", r_min, "must be a number in [0, 1)")
        check(is_number(r_max) and r_min < r_max < 1, "model.layer.r_max", r_max,
              f"must be a number in (r_min, 1) = ({r_min}, 1)")
        check(is_number(max_phase) and max_phase > 0, "model.layer.max_phase", max_phase, "must be a number > 0")
        check_choice("model.layer.activation", activation, ACTIVATIONS)
        H, N = hidden_size, hidden_size // 2
        self.f = ACTIVATIONS[activation]
        self.encoder = nn.Linear(input_size, H)  # v_t = f(W u_t + b)
        check_choice("model.layer.init", init, MATRIX_INITS)
        init_matrix(self.encoder.weight, init)  # W only: B, lambda, gamma are the paper's
        u1 = torch.rand(N).clamp_min(_TINY)
        u2 = torch.rand(N).clamp_min(_TINY)
        radius_sq = u1 * (r_max**2 - r_min**2) + r_min**2  # |lambda|^2 ~ U[r_min^2, r_max^2]
        self.nu_log = nn.Parameter(torch.log(-0.5 * torch.log(radius_sq)))  # (N,)
        self.theta_log = nn.Parameter(torch.log(max_phase * u2))  # (N,)
        self.gamma_log = nn.Parameter(0.5 * torch.log(1 - radius_sq))  # (N,) log sqrt(1 - |lambda|^2)
        self.B_re = nn.Parameter(torch.randn(N, H) / math.sqrt(2 * H))
        self.B_im = nn.Parameter(torch.randn(N, H) / math.sqrt(2 * H))

    def eigenvalues(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Re lambda, Im lambda), each (N,) (a population's: (M, N))."""
        modulus = torch.exp(-torch.exp(self.nu_log))
        phase = torch.exp(self.theta_log)
        return modulus * torch.cos(phase), modulus * torch.sin(phase)

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        v = self.f(linear(x, self.encoder.weight, self.encoder.bias))  # (B, T, H)
        d_re, d_im = matmul(v, self.B_re), matmul(v, self.B_im)  # (B, T, N) each
        gamma = vector(torch.exp(self.gamma_log), d_re)  # (N,)
        return torch.cat([d_re * gamma, d_im * gamma], dim=-1)  # (B, T, 2N)

    def step(self, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        (h,) = state
        x_re, x_im = h.chunk(2, dim=-1)  # each (B, N)
        d_re, d_im = u_t.chunk(2, dim=-1)
        l_re, l_im = (vector(v, x_re) for v in self.eigenvalues())
        x = torch.cat([l_re * x_re - l_im * x_im + d_re, l_re * x_im + l_im * x_re + d_im], dim=-1)
        return (tap("h", x),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        method = scanlib.resolve(self.scan_choice, x, self.auto)
        if method == "loop":
            return self.forward_steps(x)
        if method == "parallel":
            return self.scan(x)
        d_re, d_im = self.input_drive(x).chunk(2, dim=-1)
        z = torch.complex(d_re, d_im)  # (B, T, N)
        lam = torch.complex(*self.eigenvalues()).expand_as(z)
        h = scanlib.run_scan(method, lam, z, self.chunk)  # (B, T, N)
        return torch.cat([h.real, h.imag], dim=-1)  # (B, T, H)

    def scan(self, x: torch.Tensor) -> torch.Tensor:
        """All states at once by a parallel (Hillis-Steele) scan; equals the step path."""
        d_re, d_im = self.input_drive(x).chunk(2, dim=-1)
        z = torch.complex(d_re, d_im)  # (B, T, N)
        power = torch.complex(*self.eigenvalues())  # lambda^k, k = 1, 2, 4, ...
        T, k = z.shape[1], 1
        while k < T:  # after this pass z_t = sum_{j < 2k} lambda^j drive_{t-j}
            z = torch.cat([z[:, :k], z[:, k:] + power * z[:, :-k]], dim=1)
            power = power * power
            k *= 2
        return torch.cat([z.real, z.imag], dim=-1)  # (B, T, H)
