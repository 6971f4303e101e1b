"""Mean-field signal and gradient propagation through time in wide random LSTMs and GRUs at init.

Setting (after Gilboa, Chang, Chen, Yang, Schoenholz, Chi & Pennington 2019, "Dynamical Isometry and a
Mean Field Theory of LSTMs and GRUs", arXiv 1901.08987): torch's cells (``seqlab.models.lstm``/``gru``),
every gate block of W_hh with entries of variance sigma_w^2 / H, of W_ih sigma_u^2 / D, H -> infinity.
The paper's text was not available to this lab (only its abstract): the equations below are derived
here from first principles in the mean-field way (Gaussian pre-activations, large width), and
docs/theory.md says so. Two choices are ours, each forced by a measurement (docs/theory.md):

* **Quenched fields.** A unit's bias is the same at every step, and so, at init, is most of its
  recurrent field W h (the state settles) and the input's mean (adding's values average 1/2). Each gate
  pre-activation of unit j is u_k = b_k + sqrt(v_t) z_kj + xi_kt: b_k a knob's constant (forget/update
  bias, chrono's log U[1, Tmax - 1]), z_kj ~ N(0, 1) drawn once per unit, v_t = Var(torch's random
  bias) + sigma_w^2 E[h_{t-1}^2] + sigma_u^2 M_t (M_t = ||E x_t||^2 / D), and xi_kt ~ N(0, sigma_u^2
  (P_t - M_t)) fresh every step (P_t = E||x_t||^2 / D). Fresh biases would put the default LSTM's E[c^2]
  3x too low (c -> b_g per unit, not a third of it).
* **One W reused.** The per-step gain is the edge of the spectrum of the step's Jacobian, not its mean
  squared singular value (below).

Length maps (moments of the state given a unit's quenched variables, z-integrals by Gauss-Hermite):

  LSTM  c_t = f c_{t-1} + i g:   m_t = E[f] m_{t-1} + E[i] E[g],
                                 s_t = E[f^2] s_{t-1} + 2 E[f] E[i] E[g] m_{t-1} + E[i^2] E[g^2],
        h_t = o tanh(c_t):       E[h_t^2] = E[o^2] E[tanh(c_t)^2], c_t ~ N(m_t, s_t - m_t^2) given the unit;
  GRU   h_t = (1 - z) n + z h_{t-1}, n = tanh(b_in + W_in x + r (W_hn h + b_hn)):
                                 m_t = E[1 - z] E[n] + E[z] m_{t-1},
                                 s_t = E[(1-z)^2] E[n^2] + 2 E[(1-z) z] E[n] m_{t-1} + E[z^2] s_{t-1}

(E over the fresh xi). Their fixed points (``*_stationary``) are E[c^2]* (LSTM) and E[h^2]* (both).

The backward step. The probe measures ||dL/dh_t|| (h_l0). For the GRU,
dL/dh_{t-1} = z dL/dh_t + sum_k W_k^T (e_k dL/dh_t): a diagonal a = z plus a random matrix acting on
the same vector, i.e. J^T = A + X D with X of unit-variance entries / H and d_j^2 = sum_k sigma_w^2 e_kj^2:
    e_n = (1-z) n' r,  e_r = (1-z) n' (W_hn h + b_hn) s'(u_r),  e_z = (h_{t-1} - n) s'(u_z).
For the LSTM, with Gamma_t = dL/dc_t (total) = dL/dc_t|_h + o tanh'(c_t) dL/dh_t:
    dL/dc_{t-1}|_h = f Gamma_t,  dL/dh_{t-1} = sum_{k in f,i,g} W_k^T (e_k Gamma_t) + W_o^T (e_o dL/dh_t),
    e_f = c_{t-1} s'(u_f),  e_i = g s'(u_i),  e_g = i tanh'(u_g),  e_o = tanh(c_t) s'(u_o).

Two numbers per step come out of this:

* ``chi`` (fresh Jacobians, Gilboa et al.'s quantity): the growth factor of E||dL/dh||^2 per step when
  each step's W is a fresh draw (mean field's gradient-independence assumption; the Jacobian's mean
  squared singular value in the stationary state): the largest root of
      GRU:  mean_j d_j^2 / (chi - E[z^2]_j) = 1,
      LSTM: mean_j O'_j^2 sum_k sigma_w^2 E[e_k^2]_j / (chi - E[f^2]_j) + sigma_w^2 E[e_o^2] / chi = 1,
  with O' = o tanh'(c). Its square root is the per-step gain under that assumption (``gain_independent``).
* ``lam`` (one W reused at every step, what a network has): the right edge of the spectrum of
  A + X D, the largest real root of
      GRU:  mean_j d_j^2 / (lam - a_j)^2 = 1,
      LSTM: mean_j O'_j^2 sum_k sigma_w^2 E[e_k^2]_j / (lam - a_j)^2 + sigma_w^2 E[e_o^2] / lam^2 = 1,
  a_j the rms of the unit's forget (update) gate (the deformed circular law: z is in the spectrum of
  A + X D iff mean_j d_j^2 / |z - a_j|^2 >= 1). With a = 0 both reduce to the vanilla RNN's
  sigma_w^2 E[phi'^2]. They differ once the gates open a diagonal path: a power of one A + X D grows by
  a + d per step (the cross terms between A and X add up coherently), a product of fresh ones by
  sqrt(a^2 + d^2). Torch's default LSTM in its linear regime (a = 1/2, d = 1/(4 sqrt 3)): 0.644 per step
  against 0.520; measured at width 256: 0.649. ``lam`` is the lab's prediction.

The predicted decay curve from a loss at step tau: the first step back is one Jacobian applied to a
gradient on h_tau alone (``first``: its mean square is exact in the mean field, e.g. the LSTM's
sqrt(mean O'^2 sum_k sigma_w^2 E[e_k^2] + sigma_w^2 E[e_o^2]), a drop of ~1 decade, since the loss does not
reach c_tau directly); then prod_{j<k} lam_{tau-j}, each step's lam from that step's moments, like the
vanilla RNN's prod sqrt(chi_t).

Not modelled: the temporal correlation of the fresh part xi (taken independent across steps), the
coherent build-up of the forward state through the reused W while it grows (the length maps run a
few percent low near lam = 1, and far off once the state saturates: orthogonal W x 3, docs/theory.md),
c's non-Gaussian shape given its unit, the transient of the lags after the first, finite width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .meanfield import TheoryError

N_FLUCT = 48      # Gauss-Hermite nodes for a gate's fluctuating Gaussian part (1-D expectations)
N_FLUCT_GRU = 12  # per axis of the GRU's 2-D expectation over the input parts of r and n
N_CHRONO = 16     # Gauss-Legendre nodes over chrono's U[0, 1]
N_CELL = 24       # Gauss-Hermite nodes for c given its class (spread by the annealed input only)


def _sig(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _dsig(x):
    s = _sig(x)
    return s * (1.0 - s)


def _dtanh(x):
    return 1.0 - np.tanh(x) ** 2


@lru_cache(maxsize=16)
def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of E[f(z)], z ~ N(0, 1) (cached: computing them is most of a step's cost)."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    z.flags.writeable = False
    w = w / w.sum()
    w.flags.writeable = False
    return z, w


def _check(key: str, value, lo: float = 0.0) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= lo):
        raise TheoryError(f"{key}={value!r}: must be a finite number >= {lo:g}")
    return float(value)


# --- the quenched biases -------------------------------------------------------------------------

def chrono_nodes(tmax: float) -> tuple[np.ndarray, np.ndarray]:
    """(b, weights): chrono's b = log(1 + (Tmax - 2) U), U ~ U[0, 1] (``seqlab.models.init.chrono_bias``)."""
    tmax = _check("chrono_tmax", tmax)
    if tmax <= 2:
        raise TheoryError(f"chrono_tmax={tmax!r}: must be > 2")
    x, w = np.polynomial.legendre.leggauss(N_CHRONO)
    u = 0.5 * (x + 1.0)
    return np.log1p((tmax - 2.0) * u), 0.5 * w


# --- one-gate expectations -----------------------------------------------------------------------

def _expect(fn, b: np.ndarray, q: float, n: int = N_FLUCT) -> np.ndarray:
    """E[fn(b + sqrt(q) z)] for every bias value in ``b`` (C,), z ~ N(0, 1)."""
    z, w = _hermite(n)
    return (fn(b[:, None] + math.sqrt(max(q, 0.0)) * z[None, :]) * w).sum(axis=1)


def _expect_gauss(fn, mean: np.ndarray, var: np.ndarray, n: int = N_FLUCT) -> np.ndarray:
    """E[fn(x)], x ~ N(mean_j, var_j), per class j."""
    z, w = _hermite(n)
    return (fn(mean[:, None] + np.sqrt(np.maximum(var, 0.0))[:, None] * z[None, :]) * w).sum(axis=1)


def _largest_root(f, lo: float) -> float:
    """The largest root above ``lo`` of a function that falls from +inf at ``lo`` to -1 at infinity, by
    bisection to 1e-13 relative."""
    hi = lo + 1.0
    while f(hi) > 0:
        hi = lo + 2 * (hi - lo)
    lo += 1e-300
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return 0.5 * (lo + hi)


def _edge(a: np.ndarray, d2: np.ndarray, w: np.ndarray, extra: float = 0.0) -> float:
    """Largest real lam > max(a, 0) with sum_j w_j d2_j / (lam - a_j)^2 + extra / lam^2 = 1."""
    lo = max(float(a.max()), 0.0)
    if not (d2.any() or extra > 0):
        return lo
    return _largest_root(lambda lam: float(np.dot(w, d2 / (lam - a) ** 2)) + extra / lam ** 2 - 1.0, lo)


def _chi_independent(a2: np.ndarray, d2: np.ndarray, w: np.ndarray, extra: float = 0.0) -> float:
    """Largest chi > max(a2) with sum_j w_j d2_j / (chi - a2_j) + extra / chi = 1 (the fresh-W map's
    largest eigenvalue; the LSTM's equation divided by chi)."""
    lo = max(float(a2.max()), 0.0)
    if not (d2.any() or extra > 0):
        return lo
    return _largest_root(lambda chi: float(np.dot(w, d2 / (chi - a2))) + extra / chi - 1.0, lo)


# --- the cells -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class GatedSteps:
    """Per step t of the forward pass (arrays of length T): the state's second moment, the per-step
    gain of the gradient norm with one W reused (``lam``) and the independent-Jacobian factor of the
    squared norm (``chi``), and (LSTM) the cell's second moment."""

    cell: str
    h2: np.ndarray      # E[h_t^2]
    c2: np.ndarray      # E[c_t^2] (LSTM; nan for the GRU)
    q: np.ndarray       # a pre-activation's variance at step t (torch's random bias aside): sigma_w^2 E[h_{t-1}^2] + sigma_u^2 P_t
    lam: np.ndarray     # the Jacobian of step t: dL/dh_{t-1} from dL/dh_t, one W reused
    chi: np.ndarray     # the same step with a fresh W: factor of E||dL/dh||^2
    first: np.ndarray   # the first step back from a loss at t (on h alone): ||dL/dh_{t-1}|| / ||dL/dh_t||


N_Z = 6  # Gauss-Hermite nodes per gate for the quenched Gaussian part of its pre-activation


def _z_nodes():
    return _hermite(N_Z)


def _lstm_classes(bias_var: float, forget_bias: float | None, chrono_tmax: float | None):
    """The LSTM's quenched axes: the f/i constants (A,) with weights, their random-bias variances, and the
    standard-normal nodes of every gate's quenched Gaussian. A class is (A, z_f, z_i, z_g, z_o)."""
    if forget_bias is not None and chrono_tmax is not None:
        raise TheoryError("forget_bias and chrono_tmax: give one (chrono sets the forget bias)")
    bias_var = _check("bias variance", bias_var)
    if chrono_tmax is not None:
        bf, wA = chrono_nodes(chrono_tmax)
        cf, ci, vf, vi = bf, -bf, 0.0, 0.0   # b_i = -b_f, both set exactly
    else:
        cf = np.array([0.0 if forget_bias is None else float(forget_bias)])
        ci, wA = np.array([0.0]), np.array([1.0])
        vf, vi = (bias_var if forget_bias is None else 0.0), bias_var
    return cf, ci, wA, vf, vi, bias_var


def _lstm_step(cls, sigma_w2: float, sigma_u2: float, p: float, pm: float, h2_prev: float, m, s, Op2_prev,
               fixed: bool):
    """One step of the LSTM's maps from the previous step's E[h^2] and per-class (m, s) of c, both shaped
    (A, Z, Z, Z, Z); ``fixed``: (m, s) become the per-class fixed point at this step's gate moments.
    Returns (m, s, Op2, row) with row = (E[h^2], E[c^2], q, lam, chi)."""
    cf, ci, wA, vf, vi, vb = cls
    z, wz = _z_nodes()
    # quenched: the recurrent field and the input's mean (static over time); annealed: the input's fluctuation
    v, qx = sigma_w2 * h2_prev + sigma_u2 * pm, sigma_u2 * (p - pm)
    uf = cf[:, None] + math.sqrt(vf + v) * z[None, :]   # (A, Z)
    ui = ci[:, None] + math.sqrt(vi + v) * z[None, :]   # (A, Z)
    ug = math.sqrt(vb + v) * z                          # (Z,)
    uo = math.sqrt(vb + v) * z

    def E(fn, u):
        return _expect(fn, u.ravel(), qx).reshape(u.shape)

    sq = lambda f: (lambda x: f(x) ** 2)  # noqa: E731
    Ef, Ef2, Edf2 = E(_sig, uf), E(sq(_sig), uf), E(sq(_dsig), uf)
    Ei, Ei2, Edi2 = E(_sig, ui), E(sq(_sig), ui), E(sq(_dsig), ui)
    Eg, Eg2, Edg2 = E(np.tanh, ug), E(sq(np.tanh), ug), E(sq(_dtanh), ug)
    Eo2, Edo2 = E(sq(_sig), uo), E(sq(_dsig), uo)
    # broadcast to the cell's classes (A, z_f, z_i, z_g); the output gate's z_o is a last axis that c
    # does not depend on
    Ef, Ef2, Edf2 = (x[:, :, None, None] for x in (Ef, Ef2, Edf2))
    Ei, Ei2, Edi2 = (x[:, None, :, None] for x in (Ei, Ei2, Edi2))
    Eg, Eg2, Edg2 = (x[None, None, None, :] for x in (Eg, Eg2, Edg2))
    wc = wA[:, None, None, None] * wz[None, :, None, None] * wz[None, None, :, None] * wz[None, None, None, :]
    shape = wc.shape
    if fixed:  # m = Ef m + Ei Eg, s = Ef2 s + 2 Ef Ei Eg m + Ei2 Eg2 at their fixed point
        m = np.broadcast_to(Ei * Eg / (1 - Ef), shape)
        s = np.broadcast_to((2 * Ef * Ei * Eg * m + Ei2 * Eg2) / (1 - Ef2), shape)
        s_prev = s
    else:
        s_prev = s
        m, s = np.broadcast_to(Ef * m + Ei * Eg, shape), np.broadcast_to(Ef2 * s + 2 * Ef * Ei * Eg * m + Ei2 * Eg2, shape)
    var = s - m * m
    Etc2 = _expect_gauss(sq(np.tanh), m.ravel(), var.ravel(), N_CELL).reshape(shape)
    Edc2 = _expect_gauss(sq(_dtanh), m.ravel(), var.ravel(), N_CELL).reshape(shape)
    Eo2_mean = float(np.dot(wz, Eo2))
    h2 = float((wc * Etc2).sum()) * Eo2_mean
    Op2 = (Edc2, Eo2_mean)  # E[(o tanh'(c_t))^2] = E[tanh'(c)^2] E[o^2] per class, z_o integrated out
    # the Jacobian of step t (step t -> t - 1): the W-part's weight per class, sum over k = f, i, g of
    # sigma_w^2 E[e_k^2], times O'^2 of step t - 1 (Gamma_{t-1} = dL/dc_{t-1}|_h + O'_{t-1} dL/dh_{t-1})
    ek2 = sigma_w2 * (s_prev * Edf2 + Eg2 * Edi2 + Ei2 * Edg2)
    eo2 = sigma_w2 * float((wc * Etc2).sum() * np.dot(wz, Edo2))
    dc2, o2 = Op2 if Op2_prev is None else Op2_prev
    # a depends on (A, z_f) only, and both equations are linear in d^2: sum d^2 over z_i, z_g (exact)
    wa = wA[:, None] * wz[None, :]
    d2 = ((wc * dc2 * o2 * ek2).sum(axis=(2, 3)) / wa).ravel()
    a2 = np.broadcast_to(Ef2[:, :, 0, 0], wa.shape).ravel()
    w = wa.ravel()
    # the first step back from a loss on h_t alone (dL/dc_t|_h = 0, Gamma_t = O'_t dL/dh_t): one Jacobian,
    # no reuse yet, so its mean square is exact in the mean field
    first = float((wc * Edc2 * Eo2_mean * ek2).sum())
    row = (h2, float((wc * s).sum()), v + qx, _edge(np.sqrt(a2), d2, w, eo2), _chi_independent(a2, d2, w, eo2),
           math.sqrt(first + eo2))
    return m, s, Op2, row


def _lstm_zero(cls):
    return np.zeros((len(cls[0]), N_Z, N_Z, N_Z))


def _lstm_iter(sigma_w2: float, sigma_u2: float, powers, bias_var: float, forget_bias: float | None,
               chrono_tmax: float | None):
    """Yields (E[h^2], E[c^2], q, lam, chi) of step t = 0, 1, ... for the input powers ``powers`` (pairs
    (P_t, M_t): total and static), from h = c = 0."""
    sigma_w2, sigma_u2 = _check("sigma_w2", sigma_w2), _check("sigma_u2", sigma_u2)
    cls = _lstm_classes(bias_var, forget_bias, chrono_tmax)
    m, s, Op2, h2 = _lstm_zero(cls), _lstm_zero(cls), None, 0.0
    for p, pm in powers:
        m, s, Op2, row = _lstm_step(cls, sigma_w2, sigma_u2, float(p), float(pm), h2, m, s, Op2, False)
        h2 = row[0]
        yield row


def _gru_classes(bias_var: float, update_bias: float | None, chrono_tmax: float | None):
    """The GRU's quenched axes: the update gate's constants (A,) with weights and random-bias variance, and
    the other biases' variances (b_r: a gate's b_i* + b_h*; b_in and b_hn: one torch bias each, half of it).
    A class is (A, z_z) x (z_r, z_y, z_in), y = W_hn h + b_hn."""
    if update_bias is not None and chrono_tmax is not None:
        raise TheoryError("update_bias and chrono_tmax: give one (chrono sets the update bias)")
    bias_var = _check("bias variance", bias_var)
    if chrono_tmax is not None:
        cz, wA = chrono_nodes(chrono_tmax)
        vz = 0.0
    else:
        cz, wA = np.array([0.0 if update_bias is None else float(update_bias)]), np.array([1.0])
        vz = bias_var if update_bias is None else 0.0
    return cz, wA, vz, bias_var


_GRU_NODES: dict = {}


def _gru_nodes():
    """The 2-D rule over the annealed input parts of r and n (standard normals)."""
    if not _GRU_NODES:
        zn, wn = _hermite(N_FLUCT_GRU)
        Z = np.meshgrid(zn, zn, indexing="ij")
        _GRU_NODES["z"] = [a.ravel() for a in Z]
        _GRU_NODES["w"] = (wn[:, None] * wn[None, :]).ravel()
    return _GRU_NODES["z"], _GRU_NODES["w"]


def _gru_step(cls, sigma_w2: float, sigma_u2: float, p: float, pm: float, h2_prev: float, m, s, fixed: bool):
    """One step of the GRU's maps (``fixed``: the per-class fixed point at this step's moments); m, s
    shaped (A, Z, R) with R = Z^3 (z_r, z_y, z_in). Returns (m, s, row), row = (E[h^2], nan, q, lam, chi)."""
    cz, wA, vz, vb = cls
    z, wz = _z_nodes()
    (Xr, Xn), W2 = _gru_nodes()
    v_h = sigma_w2 * h2_prev
    v, qx = v_h + sigma_u2 * pm, sigma_u2 * (p - pm)  # quenched (recurrent field, input mean), annealed
    uz = cz[:, None] + math.sqrt(vz + v) * z[None, :]  # (A, Z)

    def E(fn):
        return _expect(fn, uz.ravel(), qx).reshape(uz.shape)[:, :, None]

    Ez, Ez2 = E(_sig), E(lambda x: _sig(x) ** 2)
    E1z2, Ez1z, Edz2 = E(lambda x: (1 - _sig(x)) ** 2), E(lambda x: _sig(x) * (1 - _sig(x))), E(lambda x: _dsig(x) ** 2)
    # quenched (z_r, z_y, z_in) x annealed (x_r, x_n): r = s(b_r + W_r h + x_r), n = tanh(b_in + x_n + r y)
    Zr, Zy, Zi = (a.ravel() for a in np.meshgrid(z, z, z, indexing="ij"))
    wR = (wz[:, None, None] * wz[None, :, None] * wz[None, None, :]).ravel()
    ur = math.sqrt(vb + v) * Zr[:, None] + math.sqrt(qx) * Xr[None, :]
    y = math.sqrt(vb / 2 + v_h) * Zy[:, None]  # W_hn h + b_hn (no input inside)
    r = _sig(ur)
    un = math.sqrt(vb / 2 + sigma_u2 * pm) * Zi[:, None] + math.sqrt(qx) * Xn[None, :] + r * y
    n = np.tanh(un)
    dn2 = (1.0 - n * n) ** 2
    En, En2 = (n @ W2)[None, None, :], ((n * n) @ W2)[None, None, :]
    Er2dn2 = ((r * r * dn2) @ W2)[None, None, :]
    Ey2dr2dn2 = ((y * y * (r * (1.0 - r)) ** 2 * dn2) @ W2)[None, None, :]
    w = wA[:, None, None] * wz[None, :, None] * wR[None, None, :]
    shape = w.shape
    if fixed:  # m = (1 - Ez) En + Ez m, s = E1z2 En2 + 2 Ez1z En m + Ez2 s at their fixed point
        m = np.broadcast_to(En, shape)
        s = np.broadcast_to((E1z2 * En2 + 2 * Ez1z * En * m) / (1 - Ez2), shape)
        m_prev, s_prev = m, s
    else:
        m_prev, s_prev = m, s
        m = np.broadcast_to((1 - Ez) * En + Ez * m_prev, shape)
        s = np.broadcast_to(E1z2 * En2 + 2 * Ez1z * En * m_prev + Ez2 * s_prev, shape)
    # the Jacobian of step t: a = z, d^2 = sigma_w^2 (E[e_n^2] + E[e_r^2] + E[e_z^2])
    Eh_n2 = s_prev - 2 * m_prev * En + En2  # E[(h_{t-1} - n_t)^2]
    d2 = sigma_w2 * (E1z2 * Er2dn2 + E1z2 * Ey2dr2dn2 + Eh_n2 * Edz2)
    # a depends on (A, z_z) only, and both equations are linear in d^2: sum d^2 over R (exact)
    wa = wA[:, None] * wz[None, :]
    d2 = ((w * d2).sum(axis=2) / wa).ravel()
    a2 = np.broadcast_to(Ez2[:, :, 0], wa.shape).ravel()
    first = float(np.dot(wa.ravel(), a2 + d2))  # one step back from a loss at t: E[z^2] + mean d^2, exact
    row = (float((w * s).sum()), math.nan, v + qx, _edge(np.sqrt(a2), d2, wa.ravel()),
           _chi_independent(a2, d2, wa.ravel()), math.sqrt(first))
    return m, s, row


def _gru_zero(cls):
    return np.zeros((len(cls[0]), N_Z, N_Z ** 3))


def _gru_iter(sigma_w2: float, sigma_u2: float, powers, bias_var: float, update_bias: float | None,
              chrono_tmax: float | None):
    """Yields (E[h^2], nan, q, lam, chi) of step t = 0, 1, ... for the input powers ``powers`` (pairs
    (P_t, M_t): total and static), from h = 0."""
    sigma_w2, sigma_u2 = _check("sigma_w2", sigma_w2), _check("sigma_u2", sigma_u2)
    cls = _gru_classes(bias_var, update_bias, chrono_tmax)
    m, s, h2 = _gru_zero(cls), _gru_zero(cls), 0.0
    for p, pm in powers:
        m, s, row = _gru_step(cls, sigma_w2, sigma_u2, float(p), float(pm), h2, m, s, False)
        h2 = row[0]
        yield row


def _collect(cell: str, rows) -> GatedSteps:
    a = np.array(list(rows), dtype=np.float64).reshape(-1, 6)
    return GatedSteps(cell, *a.T)


def _powers(input_power, input_mean_power) -> np.ndarray:
    P = np.asarray(input_power, dtype=np.float64)
    M = np.zeros_like(P) if input_mean_power is None else np.asarray(input_mean_power, dtype=np.float64)
    if M.shape != P.shape or (M < 0).any() or (M > P * (1 + 1e-12) + 1e-300).any():
        raise TheoryError("input_mean_power: one value per step, between 0 and input_power")
    return np.stack([P, np.minimum(M, P)], axis=1)


def lstm_steps(sigma_w2: float, sigma_u2: float, input_power, bias_var: float, forget_bias: float | None = None,
               chrono_tmax: float | None = None, input_mean_power=None) -> GatedSteps:
    """The LSTM's length map and per-step gains along the input power P_t (T,), from h = c = 0.
    ``bias_var``: the variance of a torch-random total gate bias b_ih + b_hh (2/(3H));
    ``input_mean_power`` M_t (T,): the part of P_t that is the batch mean's (||E x_t||^2 / D), static
    over time and so quenched like a bias (None: 0, all of the input fluctuates)."""
    return _collect("lstm", _lstm_iter(sigma_w2, sigma_u2, _powers(input_power, input_mean_power), bias_var,
                                       forget_bias, chrono_tmax))


def gru_steps(sigma_w2: float, sigma_u2: float, input_power, bias_var: float, update_bias: float | None = None,
              chrono_tmax: float | None = None, input_mean_power=None) -> GatedSteps:
    """The GRU's length map and per-step gains along the input power P_t (T,), from h = 0.
    ``bias_var``: the variance of a torch-random total gate bias b_i* + b_h* (2/(3H)); b_in and b_hn
    each have half of it (one torch bias each); ``input_mean_power`` as for ``lstm_steps``."""
    return _collect("gru", _gru_iter(sigma_w2, sigma_u2, _powers(input_power, input_mean_power), bias_var,
                                     update_bias, chrono_tmax))


@dataclass(frozen=True)
class GatedPrediction:
    """Stationary numbers under a constant input power: the fixed point of the length map and the
    per-step gains there."""

    cell: str
    h2_star: float     # E[h^2]*
    c2_star: float     # E[c^2]* (LSTM; nan for the GRU)
    lam: float         # per-step gain of ||dL/dh||, one W reused (the lab's prediction)
    chi: float         # per-step factor of E||dL/dh||^2, a fresh W each step (Gilboa et al.'s quantity)
    gain_independent: float  # sqrt(chi)
    xi: float          # -1 / ln lam steps: the gradient's timescale (inf at lam = 1; negative: growth)


def _fixed_point(step, tol: float, max_iter: int) -> tuple:
    """Iterates E[h^2] -> E[h^2] with every class at its own fixed point until it stops moving."""
    h2 = 0.0
    for _ in range(max_iter):
        row = step(h2)
        if not math.isfinite(row[0]) or row[0] > 1e6:
            raise TheoryError("the state's length map has no finite fixed point here")
        if abs(row[0] - h2) <= tol * max(row[0], 1e-300):
            return step(row[0])
        h2 = row[0]
    raise TheoryError(f"the state's length map did not converge in {max_iter} iterations")


def _prediction(cell: str, row) -> GatedPrediction:
    h2, c2, _, lam, chi, _ = row
    xi = math.inf if lam == 1 else -1.0 / math.log(lam)
    return GatedPrediction(cell, h2, c2, lam, chi, math.sqrt(chi), xi)


def lstm_stationary(sigma_w2: float, sigma_u2: float, input_power: float, bias_var: float,
                    forget_bias: float | None = None, chrono_tmax: float | None = None, input_mean_power: float = 0.0,
                    tol: float = 1e-12, max_iter: int = 10_000) -> GatedPrediction:
    """The LSTM's fixed point E[h^2]*, E[c^2]* and its per-step gains under a constant input power."""
    sigma_w2, sigma_u2, p = _check("sigma_w2", sigma_w2), _check("sigma_u2", sigma_u2), _check("input_power", input_power)
    pm = float(_powers([p], [input_mean_power])[0, 1])
    cls = _lstm_classes(bias_var, forget_bias, chrono_tmax)
    zero = _lstm_zero(cls)
    return _prediction("lstm", _fixed_point(lambda h2: _lstm_step(cls, sigma_w2, sigma_u2, p, pm, h2, zero, zero,
                                                                  None, True)[3], tol, max_iter))


def gru_stationary(sigma_w2: float, sigma_u2: float, input_power: float, bias_var: float,
                   update_bias: float | None = None, chrono_tmax: float | None = None, input_mean_power: float = 0.0,
                   tol: float = 1e-12, max_iter: int = 10_000) -> GatedPrediction:
    """The GRU's fixed point E[h^2]* and its per-step gains under a constant input power."""
    sigma_w2, sigma_u2, p = _check("sigma_w2", sigma_w2), _check("sigma_u2", sigma_u2), _check("input_power", input_power)
    pm = float(_powers([p], [input_mean_power])[0, 1])
    cls = _gru_classes(bias_var, update_bias, chrono_tmax)
    zero = _gru_zero(cls)
    return _prediction("gru", _fixed_point(lambda h2: _gru_step(cls, sigma_w2, sigma_u2, p, pm, h2, zero, zero, True)[2],
                                           tol, max_iter))


def gated_lag_curve(lam: np.ndarray, tau: int, n_lags: int, first: np.ndarray | None = None) -> np.ndarray:
    """(n_lags,) predicted g(k)/g(0) back from a loss at step ``tau``: ``first[tau]`` for the first step
    (the loss reaches h_tau alone; omitted: lam), then prod_{j<k} lam_{tau-j}; nan past the start of the
    sequence."""
    g = np.full(n_lags, np.nan)
    g[0] = 1.0
    for k in range(1, n_lags):
        t = tau - k + 1
        if t < 1:
            break
        g[k] = g[k - 1] * (first[t] if first is not None and k == 1 else lam[t])
    return g
