"""Mean-field predictions beside the probe's measurements: plain functions, no Hydra.

    from seqlab.theory import feedforward, critical_sigma_w2, rnn_stationary
    feedforward("tanh", 1.5, 0.05)         # q*, chi_1, gain = sqrt(chi_1), xi, c*, chi_c, xi_c
    critical_sigma_w2("tanh", 0.05)        # 1.761: chi_1 = 1, the order-to-chaos boundary
    rnn_stationary("tanh", 1/3, 1/3, 0, 1) # a vanilla RNN's per-step gain under unit input power
    lstm_stationary(1/3, 2/384, 0.18, 2/384, forget_bias=1.0)  # torch's LSTM, H = 128: E[c^2]*, 0.872/step

``meanfield``: feedforward nets (Schoenholz et al. 2017), batch/layer norm, residual;
``rnn``: the vanilla RNN with inputs (Chen, Pennington & Schoenholz 2018); ``gated``: the LSTM
and GRU (after Gilboa et al. 2019, derived here: quenched biases, one reused W); ``predict``: the
lab's models and init knobs -> the ``theory`` block of summary.json. docs/theory.md explains.
"""
from .meanfield import (ACTIVATIONS, FeedforwardPrediction, TheoryError, batch_norm_chi, chi1,
                        correlation_fixed_point, critical_sigma_w2, depth_curve, depth_scale, feedforward,
                        fixed_point, layer_chis, layer_norm_chi, length_map, length_sequence, residual_chis)
from .gated import GatedPrediction, GatedSteps, gru_stationary, gru_steps, lstm_stationary, lstm_steps
from .predict import bias_variance, init_variance, theory_block
from .rnn import RNNPrediction, lag_curve, rnn_length_sequence, rnn_stationary, rnn_step_chis

__all__ = ["ACTIVATIONS", "FeedforwardPrediction", "GatedPrediction", "GatedSteps", "RNNPrediction", "TheoryError",
           "batch_norm_chi", "bias_variance", "chi1", "correlation_fixed_point", "critical_sigma_w2", "depth_curve",
           "depth_scale", "feedforward", "fixed_point", "gru_stationary", "gru_steps", "init_variance", "lag_curve",
           "layer_chis", "layer_norm_chi", "length_map", "length_sequence", "lstm_stationary", "lstm_steps",
           "residual_chis", "rnn_length_sequence", "rnn_stationary", "rnn_step_chis", "theory_block"]
