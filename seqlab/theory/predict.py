"""From a lab model at init to the mean-field prediction of what its probe measures.

``init_variance`` maps the lab's init knobs (``seqlab.models.init``) to the theory's sigma^2 =
fan_in * Var(W_ij) of one weight matrix (and ``bias_variance`` its bias's); ``theory_block``
takes the built model, its model config and the probe's batch and returns the ``theory`` block
of summary.json:

    {"depth": {"gain": ..., "curve": [...], "chi_1": ..., ...} | {"absent": "one-line reason"},
     "time":  {"gain": ..., "curve": [...], "chi": ..., ...}   | {"absent": "one-line reason"}}

``gain`` is the predicted curve put through the very fit the probe applies to the measured one
(``fit_depth`` over the layers, ``fit_curve`` over the lags), so the two numbers compare like for
like; ``curve`` is the predicted g normalized (depth: g(l) / g(last layer); time: g(k) / g(0)).
The block holds for random weights at init only: a trained model gets an absent prediction.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..probe.fit import fit_curve, fit_depth
from .meanfield import (ACTIVATIONS, batch_norm_chi, depth_curve, feedforward, layer_chis, layer_norm_chi,
                        residual_chis)
from .gated import gated_lag_curve, gru_stationary, gru_steps, lstm_stationary, lstm_steps
from .meanfield import TheoryError
from .rnn import lag_curve, rnn_length_sequence, rnn_stationary, rnn_step_chis

MIN_WIDTH = 16  # below this the infinite-width theory is not offered





def init_variance(scheme: str, gain: float, fan_in: int, fan_out: int, default_fan: int | None = None) -> float | None:
    """sigma_w^2 = fan_in * Var(W_ij) of a (fan_out, fan_in) matrix drawn by ``scheme`` and scaled by
    ``gain`` (None: ``identity``, which is not a random matrix):

      default     torch's U(-1/sqrt(n), 1/sqrt(n)), n = fan_in for nn.Linear, H for nn.RNN's matrices
                  (``default_fan``): fan_in / (3 n) gain^2 (1/3 for a Linear: torch's default is far
                  below the critical sigma_w^2 of any of the lab's activations)
      xavier      2 fan_in / (fan_in + fan_out) gain^2
      kaiming     2 gain^2 (He et al.'s N(0, 2 / fan_in))
      orthogonal  gain^2 min(fan_in, fan_out) / fan_out (a semi-orthogonal Q has Var(Q_ij) =
                  min / (fan_in fan_out)); square: gain^2
    """
    g2 = float(gain) ** 2
    if scheme == "default":
        n = default_fan or fan_in
        return fan_in / (3.0 * n) * g2
    if scheme == "xavier":
        return 2.0 * fan_in / (fan_in + fan_out) * g2
    if scheme == "kaiming":
        return 2.0 * g2
    if scheme == "orthogonal":
        return min(fan_in, fan_out) / fan_out * g2
    return None


def bias_variance(n: int, count: int = 1) -> float:
    """Variance of a sum of ``count`` torch-default biases U(-1/sqrt(n), 1/sqrt(n)): count / (3 n)."""
    return count / (3.0 * n)


def _fmt(x):
    """JSON-safe float: inf/nan as strings."""
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else str(x)
    return x


ODD = ("tanh", "identity")  # zero-mean activations: the residual recursion holds for them (docs/theory.md)


def absent(reason: str) -> dict:
    return {"absent": reason}


def _input_power(inputs: torch.Tensor) -> np.ndarray:
    """(T,) mean squared input entry at every step, over the batch and the channels."""
    return inputs.detach().double().pow(2).mean(dim=(0, 2)).cpu().numpy()


def _layer_cfg(model_cfg: dict) -> dict:
    return (model_cfg or {}).get("layer") or {}


def depth_prediction(model, model_cfg: dict, inputs: torch.Tensor, loss_steps, g_top: float = 1.0) -> dict:
    """The depth axis: a stack of feedforward layers (plain, batch norm, layer norm, residual)."""
    from ..models import FeedforwardLayer

    layers = list(model.layers)
    NL = len(layers)
    if NL < 2:
        return absent("one layer: no depth axis")
    if not all(isinstance(layer, FeedforwardLayer) for layer in layers):
        return absent("stacked recurrent layers: the mean-field theory here covers feedforward stacks only")
    if len(model.between):
        return absent("a norm between layers (model.between): not covered; use model.layer.norm")
    lc = _layer_cfg(model_cfg)
    act, H, D = layers[0].activation, model.layers[0].hidden_size, model.layers[0].input_size
    if H < MIN_WIDTH:
        return absent(f"width {H} < {MIN_WIDTH}: mean-field theory is an infinite-width limit")
    norm = "none" if layers[0].norm is None else ("batch" if getattr(layers[0].norm, "batch_statistics", False) else "layer")
    scheme, gain = lc.get("init", "default"), lc.get("gain", 1.0)
    sw2 = init_variance(scheme, gain, H, H)
    sw2_first = init_variance(scheme, gain, D, H)
    sb2 = 0.0 if norm != "none" else bias_variance(H)
    sb2_first = 0.0 if norm != "none" else bias_variance(D)
    steps = torch.as_tensor(loss_steps).long()
    power = float(_input_power(inputs[:, steps]).mean())
    q1 = sw2_first * power + sb2_first
    out = {"theory": "", "activation": act, "norm": norm, "residual": bool(model.residual), "width": H,
           "sigma_w2": sw2, "sigma_b2": sb2, "sigma_w2_first": sw2_first, "input_power": power}
    if norm == "batch":
        if model.residual:
            return absent("batch norm with residual skips: not covered")
        chi = batch_norm_chi(act)
        chis = np.full(NL, chi)
        out.update(theory="batch norm, large-batch limit (Yang et al. 2019)", chi_1=chi)
    elif norm == "layer":
        if model.residual:
            return absent("layer norm with residual skips: not covered")
        chi = layer_norm_chi(act)
        chis = np.full(NL, chi)
        out.update(theory="layer norm, wide limit (derived like batch norm's)", chi_1=chi)
    elif model.residual:
        if act not in ODD:
            return absent(f"residual {act} net: phi's nonzero mean accumulates through the skips and the mean-field "
                          f"independence assumption fails (ReLU, 30 layers: measured 1.17 vs 1.08 per layer)")
        chis = residual_chis(act, sw2, sb2, q1, NL)
        out.update(theory="reduced residual net (Yang & Schoenholz 2017)", chi_per_layer=chis.tolist())
    else:
        chis = layer_chis(act, sw2, sb2, q1, NL)
        fp = feedforward(act, sw2, sb2)
        out.update(theory="deep information propagation (Schoenholz et al. 2017)", chi_per_layer=chis.tolist(),
                   q_star=fp.q_star, chi_1=fp.chi_1, gain_fixed_point=fp.gain, xi=fp.xi, xi_c=fp.xi_c)
    curve = depth_curve(chis)
    out["curve"] = curve.tolist()
    out["gain"] = fit_depth(g_top * curve)["gain"]
    return {k: _fmt(v) if not isinstance(v, list) else [_fmt(x) for x in v] for k, v in out.items()}


GATED_REASONS = {
    "BNLSTMLayer": "batch-normalized LSTM: no mean-field formula here",
    "MinGRULayer": "minGRU: its gates read the input only, so dh_t/dh_(t-1) = diag(1 - z_t) (signed: 1 - 2 z_t) is set by the data, "
                   "not by a mean-field fixed point",
    "MinLSTMLayer": "minLSTM: its gates read the input only, so dh_t/dh_(t-1) = diag(f'_t) (signed: 2 f'_t - 1) is set by the data, "
                    "not by a mean-field fixed point",
    "SelectiveLayer": "selective SSM: its transition (exp(Delta_t A), or 2 exp(Delta_t A) - 1 signed) is set by the "
                      "data, not by a mean-field fixed point",
    "IndRNNLayer": "IndRNN: a diagonal recurrent matrix is not a random matrix; its factor is |u_i f'| unit by unit",
    "LRULayer": "LRU: a linear diagonal recurrence; its gain is its eigenvalues' moduli, not a mean-field prediction",
    "CoRNNLayer": "coRNN: an oscillator network, outside these formulas",
    "OrthogonalRNNLayer": "expRNN: its modReLU/learned orthogonal map is outside these formulas",
    "FeedforwardLayer": "no recurrence: g(k) = 0 for every lag k > 0",
}


GATED_THEORY = ("gated mean field (after Gilboa et al. 2019, derived here): quenched biases, the per-step gain "
                "at the edge of the reused Jacobian's spectrum")


def gated_time_prediction(layer, model_cfg: dict, inputs: torch.Tensor, loss_steps, n_lags: int) -> dict:
    """The lag axis of a one-layer LSTM or GRU at init (``seqlab.theory.gated``)."""
    kind = type(layer).__name__
    cell = "LSTM" if kind == "LSTMLayer" else "GRU"
    H, D = layer.hidden_size, layer.input_size
    if H < MIN_WIDTH:
        return absent(f"width {H} < {MIN_WIDTH}: mean-field theory is an infinite-width limit")
    if getattr(layer, "layer_norm", False):
        return absent(f"layer-normalized {cell}: not covered")
    lc = _layer_cfg(model_cfg)
    scheme, rho = lc.get("init", "default"), float(lc.get("recurrent_gain", 1.0))
    if scheme == "identity":
        return absent("identity W_hh blocks are not random matrices: mean-field theory does not cover them")
    sw2 = init_variance(scheme, rho, H, H, default_fan=H)
    su2 = init_variance(scheme, 1.0, D, H, default_fan=H)
    sb2 = bias_variance(H, 2)  # b_ih + b_hh of a gate, both torch's U(-1/sqrt(H), 1/sqrt(H))
    const = lc.get("forget_bias" if cell == "LSTM" else "update_bias")
    tmax = lc.get("chrono_tmax") if lc.get("chrono") else None
    if lc.get("chrono") and not isinstance(tmax, (int, float)):
        return absent(f"chrono with chrono_tmax={tmax!r}: no number to integrate the biases over")
    power = _input_power(inputs)  # (T,)
    mean_power = inputs.detach().double().mean(dim=0).pow(2).mean(dim=-1).cpu().numpy()  # (T,): ||E x_t||^2 / D
    try:
        if cell == "LSTM":
            steps = lstm_steps(sw2, su2, power, sb2, const, tmax, mean_power)
            st = lstm_stationary(sw2, su2, float(power.mean()), sb2, const, tmax, float(mean_power.mean()))
        else:
            steps = gru_steps(sw2, su2, power, sb2, const, tmax, mean_power)
            st = gru_stationary(sw2, su2, float(power.mean()), sb2, const, tmax, float(mean_power.mean()))
    except TheoryError as e:
        return absent(f"{cell}: {e}")
    taus = [int(t) for t in torch.as_tensor(loss_steps).tolist()]
    curve = np.nanmean(np.stack([gated_lag_curve(steps.lam, tau, n_lags, steps.first) for tau in taus]), axis=0)
    out = {"theory": GATED_THEORY, "cell": cell, "width": H, "sigma_w2": sw2, "sigma_u2": su2, "sigma_b2": sb2,
           ("forget_bias" if cell == "LSTM" else "update_bias"): const, "chrono_tmax": tmax,
           "input_power": float(power.mean()), "input_mean_power": float(mean_power.mean()), "h2_star": st.h2_star, "lam": st.lam, "xi": st.xi,
           "chi_independent": st.chi, "gain_independent": st.gain_independent}
    if cell == "LSTM":
        out["c2_star"] = st.c2_star
    fit = fit_curve(curve[np.isfinite(curve)], lags=())
    out.update(curve=curve.tolist(), gain=fit["gain"])
    return {k: _fmt(v) if not isinstance(v, list) else [_fmt(x) for x in v] for k, v in out.items()}


def time_prediction(model, model_cfg: dict, inputs: torch.Tensor, loss_steps, n_lags: int) -> dict:
    """The lag axis of a one-layer vanilla RNN (Chen, Pennington & Schoenholz 2018, with inputs), LSTM or
    GRU (``seqlab.theory.gated``)."""
    from ..models import RNNLayer

    if n_lags < 2:
        return absent("one lag: no time axis")
    layer = model.layers[0]
    kind = type(layer).__name__
    if kind in ("LSTMLayer", "GRULayer"):
        if len(model.layers) > 1:
            return absent("stacked RNN: the time curves of a stack mix depth and time; one layer only")
        return gated_time_prediction(layer, model_cfg, inputs, loss_steps, n_lags)
    if not isinstance(layer, RNNLayer):
        return absent(GATED_REASONS.get(kind, f"{kind}: no mean-field formula here"))
    if len(model.layers) > 1:
        return absent("stacked RNN: the time curves of a stack mix depth and time; one layer only")
    if layer.norm is not None:
        return absent("layer-normalized RNN: not covered")
    H, D, act = layer.hidden_size, layer.input_size, layer.activation
    if H < MIN_WIDTH:
        return absent(f"width {H} < {MIN_WIDTH}: mean-field theory is an infinite-width limit")
    lc = _layer_cfg(model_cfg)
    scheme, rho = lc.get("init", "default"), float(lc.get("recurrent_gain", 1.0))
    sb2 = bias_variance(H, 2)  # b_ih + b_hh, both torch's U(-1/sqrt(H), 1/sqrt(H))
    power = _input_power(inputs)  # (T,)
    if scheme == "identity":
        if act != "identity":
            return absent("identity W_hh is not a random matrix: mean-field theory does not cover it")
        sw2, su2 = None, init_variance("default", 1.0, D, H, default_fan=H)
    else:
        sw2 = init_variance(scheme, rho, H, H, default_fan=H)
        su2 = init_variance(scheme, 1.0, D, H, default_fan=H)
    taus = [int(t) for t in torch.as_tensor(loss_steps).tolist()]
    if sw2 is None:  # a linear RNN with W = rho I: exact, g(k) = rho^k
        curve = rho ** np.arange(n_lags, dtype=np.float64)
        out = {"theory": "exact: linear RNN with W_hh = rho I", "activation": act, "width": H, "rho": rho}
    else:
        q = rnn_length_sequence(act, sw2, su2, sb2, power)
        chis = rnn_step_chis(act, sw2, q)
        curve = np.nanmean(np.stack([lag_curve(chis, tau, n_lags) for tau in taus]), axis=0)
        st = rnn_stationary(act, sw2, su2, sb2, float(power.mean()))
        out = {"theory": "vanilla RNN with inputs (Chen, Pennington & Schoenholz 2018)", "activation": act,
               "width": H, "sigma_w2": sw2, "sigma_u2": su2, "sigma_b2": sb2, "input_power": float(power.mean()),
               "q_star": st.q_star, "chi": st.chi, "gain_fixed_point": st.gain, "xi": st.xi}
    fit = fit_curve(curve[np.isfinite(curve)], lags=())
    out.update(curve=curve.tolist(), gain=fit["gain"])
    return {k: _fmt(v) if not isinstance(v, list) else [_fmt(x) for x in v] for k, v in out.items()}


def theory_block(model, model_cfg: dict, inputs: torch.Tensor, loss_steps, n_lags: int,
                 g_top: float = 1.0) -> dict:
    """{'depth': ..., 'time': ...}: each a prediction or {'absent': reason}. For a model at init."""
    act = getattr(model.layers[0], "activation", None)
    if act is not None and act not in ACTIVATIONS:
        reason = f"activation {act!r}: not in the mean-field library"
        return {"depth": absent(reason), "time": absent(reason)}
    return {"depth": depth_prediction(model, model_cfg, inputs, loss_steps, g_top),
            "time": time_prediction(model, model_cfg, inputs, loss_steps, n_lags)}
