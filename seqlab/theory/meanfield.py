"""Mean-field signal propagation in wide random feedforward nets (plain numpy functions).

Setting (Schoenholz, Gilmer, Ganguli & Sohl-Dickstein 2017, "Deep Information Propagation";
Poole et al. 2016): layer l computes z_l = W_l x_l + b_l, x_{l+1} = phi(z_l), with
W_ij ~ N(0, sigma_w^2 / fan_in), b_i ~ N(0, sigma_b^2), width -> infinity.

  length map      q^{l+1} = sigma_w^2 E_z[phi(sqrt(q^l) z)^2] + sigma_b^2,   z ~ N(0, 1)
                  (q^l: the variance of a pre-activation z_l), fixed point q*
  chi_1           sigma_w^2 E_z[phi'(sqrt(q*) z)^2]: the factor by which ||dL/dx||^2 changes per
                  layer going down (< 1 ordered: gradients vanish; > 1 chaotic: they explode)
  xi (gradient)   -1 / ln chi_1 layers (negative in the chaotic phase: growth)
  correlation map c^{l+1} = [sigma_w^2 E[phi(u_1) phi(u_2)] + sigma_b^2] / q*,
                  u_1 = sqrt(q*) z_1, u_2 = sqrt(q*) (c z_1 + sqrt(1 - c^2) z_2); fixed point c*
  chi_c           sigma_w^2 E[phi'(u_1) phi'(u_2)] at c*; xi_c = -1 / ln chi_c (c* = 1 in the
                  ordered phase, so there chi_c = chi_1); xi_c diverges at chi_1 = 1. Schoenholz
                  et al.: nets train only when their depth is below ~6 xi_c.

The gradient *norm* the lab's probe measures changes by sqrt(chi) per layer; ``layer_gains``
gives that factor layer by layer along the length map (before q has reached q*).

Expectations: relu, leaky_relu and identity in closed form (the arc-cosine kernel); the smooth
activations by a Gaussian-weighted trapezoid rule whose step follows sqrt(q) (``gauss_grid``:
Gauss-Hermite with a fixed node set goes wrong once sqrt(q) is a few units, see there).

Orthogonal weights (W = rho Q) have the same length map and chi_1 with sigma_w^2 = rho^2: the
mean of the squared singular values of the layer Jacobian is the same; only its spread differs
(Pennington, Schoenholz & Ganguli 2017). The per-layer gain of the norm is therefore the same
prediction; dynamical isometry (all singular values near 1) is a statement about the spread.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

LEAKY_SLOPE = 0.01  # seqlab.models.activations.LEAKY_SLOPE (torch's default)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _erf(x):
    return torch.special.erf(torch.as_tensor(np.asarray(x, dtype=np.float64))).numpy()


def _gauss_cdf(x):
    return 0.5 * (1.0 + _erf(np.asarray(x) / math.sqrt(2.0)))


def _gauss_pdf(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


# name -> (phi, phi'), numpy element-wise; the same names and functions as seqlab.models.activations
ACTIVATIONS = {
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1.0 - _sigmoid(x))),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(np.float64)),
    "leaky_relu": (lambda x: np.where(x > 0, x, LEAKY_SLOPE * x), lambda x: np.where(x > 0, 1.0, LEAKY_SLOPE)),
    "gelu": (lambda x: x * _gauss_cdf(x), lambda x: _gauss_cdf(x) + x * _gauss_pdf(x)),
    "identity": (lambda x: x, lambda x: np.ones_like(x)),
}


class TheoryError(ValueError):
    """A setting outside what these formulas accept (an unknown activation, a negative variance)."""


def activation(name: str):
    """(phi, phi') for one of ``ACTIVATIONS``; anything else is refused with one line."""
    if name not in ACTIVATIONS:
        raise TheoryError(f"activation={name!r}: the mean-field library knows {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


Z_MAX = 10.0  # the rule's range in z: the Gaussian beyond it weighs < 1e-22
MAX_GRID = 2001  # points per axis of the two-dimensional rule (memory: MAX_GRID^2 floats)


@lru_cache(maxsize=64)
def gauss_grid(scale: float = 1.0, max_points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of E[f(z)], z ~ N(0, 1), for f(z) = g(scale z) with g varying on a scale ~1:
    the trapezoid rule on [-Z_MAX, Z_MAX] with step h = min(0.1, 0.25 / scale).

    Why not Gauss-Hermite alone: its nodes near 0 are ~0.25 apart (100 nodes), so once sqrt(q) is a
    few units, tanh'(sqrt(q) z) is narrower than the node spacing and the rule misses it (E[tanh'^2]
    at q = 25 is 23% low with 100 nodes; at q = 64 71% low). The trapezoid rule on a Gaussian-weighted
    smooth integrand converges geometrically once h resolves it; with this h it agrees with a
    400001-point reference to 1e-11 for q from 0.01 to 1e4 (tanh'^2, sigmoid^2)."""
    h = min(0.1, 0.25 / max(scale, 1e-12))
    n = int(math.ceil(Z_MAX / h))
    if max_points is not None and 2 * n + 1 > max_points:
        n = (max_points - 1) // 2
        h = Z_MAX / n
    z = np.arange(-n, n + 1) * h
    return z, np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi) * h


def gauss_mean(f, scale: float = 1.0) -> float:
    """E[f(z)] for z ~ N(0, 1) (f vectorized); ``scale``: f's features sit at |z| ~ 1 / scale."""
    z, w = gauss_grid(float(scale))
    return float(np.dot(w, f(z)))


def _check_var(key: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise TheoryError(f"{key}={value!r}: must be a finite number >= 0")
    return float(value)


def _piecewise_slope(act: str) -> float | None:
    """a for phi(x) = a x + (1 - a) relu(x) (identity: 1, relu: 0, leaky_relu: its slope); None otherwise.
    These get closed forms (quadrature converges slowly across a kink)."""
    return {"identity": 1.0, "relu": 0.0, "leaky_relu": LEAKY_SLOPE}.get(act)


def mean_phi(act: str, q: float) -> float:
    """E[phi(sqrt(q) z)]."""
    a = _piecewise_slope(act)
    if a is not None:
        return (1.0 - a) * math.sqrt(max(q, 0.0) / (2.0 * math.pi))
    phi, _ = activation(act)
    s = math.sqrt(max(q, 0.0))
    return gauss_mean(lambda z: phi(s * z), s)


def second_moment(act: str, q: float) -> float:
    """E[phi(sqrt(q) z)^2]."""
    return pair_phi(act, q, 1.0)


def derivative_moment(act: str, q: float) -> float:
    """E[phi'(sqrt(q) z)^2]."""
    return pair_dphi(act, q, 1.0)


def pair_phi(act: str, q: float, c: float) -> float:
    """E[phi(u_1) phi(u_2)], (u_1, u_2) Gaussian with variance q each and correlation c."""
    a = _piecewise_slope(act)
    if a is not None:  # the arc-cosine kernel (Cho & Saul 2009) for the relu part
        c = min(max(c, -1.0), 1.0)
        relu = q / (2 * math.pi) * (math.sqrt(max(1 - c * c, 0.0)) + (math.pi - math.acos(c)) * c)
        return a * a * q * c + 2 * a * (1 - a) * q * c / 2 + (1 - a) ** 2 * relu
    return _pair_means(act, q, c, "phi")


def pair_dphi(act: str, q: float, c: float) -> float:
    """E[phi'(u_1) phi'(u_2)], as ``pair_phi``."""
    a = _piecewise_slope(act)
    if a is not None:
        c = min(max(c, -1.0), 1.0)
        return a * a + a * (1 - a) + (1 - a) ** 2 * (math.pi - math.acos(c)) / (2 * math.pi)
    return _pair_means(act, q, c, "dphi")


def length_map(act: str, sigma_w2: float, sigma_b2: float, q: float) -> float:
    """One layer of the length map: q -> sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2."""
    return sigma_w2 * second_moment(act, q) + sigma_b2


def length_sequence(act: str, sigma_w2: float, sigma_b2: float, q1: float, layers: int) -> np.ndarray:
    """(layers,) q^0 .. q^{layers-1}: the pre-activation variance of each layer, starting from the
    first layer's q1 = sigma_w1^2 * (mean squared input entry) + sigma_b1^2."""
    q = [float(q1)]
    for _ in range(layers - 1):
        q.append(length_map(act, sigma_w2, sigma_b2, q[-1]))
    return np.array(q)


def fixed_point(act: str, sigma_w2: float, sigma_b2: float, q0: float = 1.0, tol: float = 1e-12,
                max_iter: int = 100_000) -> float:
    """q* of the length map, by iterating it from ``q0``; inf when q grows without bound (e.g. a
    linear or relu net with sigma_w^2 past 1 or 2)."""
    sigma_w2, sigma_b2 = _check_var("sigma_w2", sigma_w2), _check_var("sigma_b2", sigma_b2)
    if act == "identity":  # closed form: q* = sigma_b^2 / (1 - sigma_w^2)
        if sigma_b2 == 0 and sigma_w2 == 1:
            return float(q0)
        return sigma_b2 / (1.0 - sigma_w2) if sigma_w2 < 1 else math.inf
    if act in ("relu", "leaky_relu"):  # positively homogeneous: E[phi(sqrt(q) z)^2] = q m
        m = 0.5 * (1.0 + (LEAKY_SLOPE ** 2 if act == "leaky_relu" else 0.0))
        slope = sigma_w2 * m
        if sigma_b2 == 0 and slope == 1:  # every q is fixed: the critical relu net keeps its input's q
            return float(q0)
        return sigma_b2 / (1.0 - slope) if slope < 1 else math.inf
    q = float(q0)
    for _ in range(max_iter):
        nxt = length_map(act, sigma_w2, sigma_b2, q)
        if not math.isfinite(nxt) or nxt > 1e12:
            return math.inf
        if abs(nxt - q) <= tol * max(1.0, q):
            return nxt
        q = nxt
    return q


def chi1(act: str, sigma_w2: float, q: float) -> float:
    """sigma_w^2 E[phi'(sqrt(q) z)^2]: the per-layer factor of ||dL/dx||^2 at pre-activation variance q."""
    return sigma_w2 * derivative_moment(act, q)


def _pair_means(act: str, q: float, c: float, fn: str) -> float:
    """E[f(u_1) f(u_2)] for (u_1, u_2) Gaussian, variance q each, correlation c; f = phi or phi'
    (the product of two ``gauss_grid`` rules; c = 1: the one-dimensional rule)."""
    phi, dphi = activation(act)
    f = phi if fn == "phi" else dphi
    s = math.sqrt(max(q, 0.0))
    if c >= 1.0:
        return gauss_mean(lambda z: f(s * z) ** 2, s)
    c = max(c, -1.0)
    z, w = gauss_grid(s, MAX_GRID)
    u1 = s * z[:, None]
    u2 = s * (c * z[:, None] + math.sqrt(max(1.0 - c * c, 0.0)) * z[None, :])
    return float(w @ (f(u1) * f(u2)) @ w)


def correlation_fixed_point(act: str, sigma_w2: float, sigma_b2: float, q_star: float, tol: float = 1e-12) -> float:
    """c* of the correlation map c -> [sigma_w^2 E[phi(u_1) phi(u_2)] + sigma_b^2] / q* at q*, by bisection
    of F(c) - c on [0, 1): F is increasing with F(0) >= 0 and F(1) = 1, so in the chaotic phase (slope
    chi_1 > 1 at c = 1) the stable fixed point is the crossing below 1. 1 when there is none (ordered)."""
    if not (q_star > 0 and math.isfinite(q_star)):
        return 1.0
    g = lambda c: (sigma_w2 * pair_phi(act, q_star, c) + sigma_b2) / q_star - c  # noqa: E731
    lo, hi = 0.0, 1.0 - 1e-6
    if g(hi) >= 0:
        return 1.0
    if g(lo) <= 0:
        return 0.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if g(mid) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def depth_scale(chi: float) -> float:
    """-1 / ln chi: the layers over which a factor chi per layer changes things by e (inf at chi = 1;
    negative for chi > 1, growth)."""
    if not (chi > 0 and math.isfinite(chi)):
        return math.nan if not chi == 0 else 0.0
    if chi == 1.0:
        return math.inf
    return -1.0 / math.log(chi)


@dataclass(frozen=True)
class FeedforwardPrediction:
    """Mean-field numbers of one (activation, sigma_w^2, sigma_b^2) at the fixed point."""

    activation: str
    sigma_w2: float
    sigma_b2: float
    q_star: float
    chi_1: float          # per-layer factor of the squared gradient norm
    gain: float           # sqrt(chi_1): per-layer factor of the gradient norm (the probe's depth gain)
    xi: float             # -1 / ln chi_1, layers (squared norm; the norm's scale is 2 xi)
    c_star: float
    chi_c: float
    xi_c: float           # correlation depth scale; trainable depth ~ 6 xi_c

    def as_dict(self) -> dict:
        return {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
                for k, v in self.__dict__.items()}


def feedforward(act: str, sigma_w2: float, sigma_b2: float = 0.0, q0: float = 1.0) -> FeedforwardPrediction:
    """Fixed point, chi_1, xi, c*, chi_c and xi_c of a deep random net."""
    activation(act)
    q = fixed_point(act, sigma_w2, sigma_b2, q0)
    if not math.isfinite(q):  # unbounded growth (linear / relu-like past criticality): chi_1 is still defined
        c1 = chi1(act, sigma_w2, 1.0) if act in ("relu", "leaky_relu", "identity") else math.nan
        return FeedforwardPrediction(act, sigma_w2, sigma_b2, q, c1, math.sqrt(c1) if c1 == c1 else math.nan,
                                     depth_scale(c1), math.nan, math.nan, math.nan)
    c1 = chi1(act, sigma_w2, q)
    if q == 0.0 or c1 <= 1.0:  # ordered phase: c* = 1 is the stable fixed point (Schoenholz et al. sec. 3),
        cs, cc = 1.0, c1        # so chi_c = chi_1 (sigma_b = 0 below criticality: the signal itself dies)
    else:
        cs = correlation_fixed_point(act, sigma_w2, sigma_b2, q)
        cc = sigma_w2 * pair_dphi(act, q, cs) if cs < 1 - 1e-6 else c1
    return FeedforwardPrediction(act, sigma_w2, sigma_b2, q, c1, math.sqrt(c1), depth_scale(c1), cs, cc,
                                 depth_scale(cc))


def critical_sigma_w2(act: str, sigma_b2: float, lo: float = 0.05, hi: float = 20.0, tol: float = 1e-9) -> float:
    """The sigma_w^2 with chi_1 = 1 at the fixed point (the order-to-chaos boundary), by bisection."""
    activation(act)

    def f(s):  # chi_1(s) - 1, increasing in s
        q = fixed_point(act, s, sigma_b2)
        return (chi1(act, s, q) if math.isfinite(q) else math.inf) - 1.0

    if f(lo) > 0 or f(hi) < 0:
        raise TheoryError(f"activation={act!r} sigma_b2={sigma_b2}: chi_1 = 1 is not crossed for sigma_w2 in "
                          f"[{lo}, {hi}]")
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def layer_chis(act: str, sigma_w2: float, sigma_b2: float, q1: float, layers: int) -> np.ndarray:
    """(layers,) chi of each layer along the length map from q1 (layer 0 next to the input)."""
    return np.array([chi1(act, sigma_w2, q) for q in length_sequence(act, sigma_w2, sigma_b2, q1, layers)])


def depth_curve(chis: np.ndarray) -> np.ndarray:
    """(NL,) predicted g(l) / g(NL-1) of the gradient norm at each layer's output x_{l+1}, from the
    per-layer chi of layers 1..NL-1 (``chis[l]`` is layer l's; layer 0's never enters: the probe
    taps layer outputs, and g(l-1) = sqrt(chi_l) g(l))."""
    chis = np.asarray(chis, dtype=np.float64)
    NL = len(chis)
    g = np.ones(NL)
    for l in range(NL - 2, -1, -1):
        g[l] = g[l + 1] * math.sqrt(chis[l + 1])
    return g


def batch_norm_chi(act: str) -> float:
    """Per-layer factor of ||dL/dx||^2 in a wide net of Linear -> batch norm -> phi at init, in the
    limit of a large batch: E[phi'(y)^2] / Var[phi(y)], y ~ N(0, 1).

    Derivation (the large-batch limit of Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz 2019,
    "A Mean Field Theory of Batch Normalization"): batch norm makes each unit's pre-activations
    over the batch standard normal with cross-example correlation -1/(B-1) -> 0, and divides the
    backward signal by the batch std of W x, whose square is sigma_w^2 Var_batch[phi(y)]; the
    sigma_w^2 of the forward and the backward pass cancel (batch norm is scale invariant). By the
    Gaussian Poincare inequality Var[phi(y)] <= E[phi'(y)^2], with equality only for a linear phi:
    gradients explode for every nonlinearity (their result). ReLU: pi / (pi - 1) = 1.467 (their
    value as B -> infinity). A finite batch B changes it at order 1/B.
    """
    var = second_moment(act, 1.0) - mean_phi(act, 1.0) ** 2
    return derivative_moment(act, 1.0) / var


def layer_norm_chi(act: str) -> float:
    """Per-layer factor of ||dL/dx||^2 in a wide net of Linear -> layer norm -> phi at init:
    E[phi'(y)^2] / E[phi(y)^2], y ~ N(0, 1). The same argument as ``batch_norm_chi`` with the
    statistics over the H units of one example instead of over the batch: the std divided out is
    sigma_w sqrt(E[phi(y)^2]) (the units' mean of W x is ~0, so the mean of phi is not removed).
    ReLU gives exactly 1. Derived here, not taken from a paper; the wide-MLP test measures it."""
    return derivative_moment(act, 1.0) / second_moment(act, 1.0)


def residual_chis(act: str, sigma_w2: float, sigma_b2: float, q1: float, layers: int) -> np.ndarray:
    """(layers,) per-layer factors of ||dL/dx||^2 of the lab's residual stack x_{l+1} = x_l + phi(W_l x_l
    + b_l) for l >= 1 (layer 0 has no skip: x_1 = phi(z_0)), with the mean-field recursion of the
    reduced residual network of Yang & Schoenholz 2017 ("Mean Field Residual Networks: On the Edge of
    Chaos"): p^l = mean squared entry of x_l, m^l its mean,
      q^l = sigma_w^2 p^l + sigma_b^2,  h = phi(sqrt(q^l) z),
      p^{l+1} = p^l + 2 m^l E[h] + E[h^2],  m^{l+1} = m^l + E[h]
    (a unit's own input is independent of its branch at infinite width, so the cross term is the
    product of the means: zero for tanh, not for relu), and per layer
    ||dL/dx_l||^2 = (1 + sigma_w^2 E[phi'(sqrt(q^l) z)^2]) ||dL/dx_{l+1}||^2 (the skip and the branch
    add independently). There is no single rate: for tanh q grows and the factor tends to 1
    (their polynomial dynamics); for relu the recursion says 1 + sigma_w^2 / 2, but measured deep ReLU
    residual nets grow faster (the accumulated mean couples the masks to W: docs/theory.md), so
    ``predict`` offers this for zero-mean activations only. Entry 0 (no skip) is layer 0's plain chi."""
    activation(act)
    out = []
    q = float(q1)
    p = m = 0.0
    for l in range(layers):
        if l > 0:
            q = sigma_w2 * p + sigma_b2
        eh, eh2 = mean_phi(act, q), second_moment(act, q)
        c = chi1(act, sigma_w2, q)
        out.append(c if l == 0 else 1.0 + c)
        p, m = (eh2, eh) if l == 0 else (p + 2 * m * eh + eh2, m + eh)
    return np.array(out)
