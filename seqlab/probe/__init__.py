"""The BPTT gradient probe: exact dL/dh_t (and dL/dc_t) against the lag, the decay
fits, and the Lyapunov spectrum of the recurrent dynamics.

Pure functions from (model, task, batch) to numpy arrays; logging is the caller's
(train.py during training, ``python -m seqlab.probe`` for a model without training).

    from seqlab.probe import ProbeSettings, probe
    result = probe(model, task, ProbeSettings().make_batch(task))
    result.curves.mean["h_l0"]   # (K,) g(k), lag 0 first
    result.summary()             # {'h_l0': {'gain': ..., 'half_life': ..., ...}, 'lyapunov_l0': {...}}
"""
from .fit import fit_curve, noise_floor
from .gradient import GradientCurves, curve_keys, gradient_curves, probe_loss_steps, probe_mode
from .history import ProbeHistory
from .lyapunov import layer_inputs, lyapunov_spectra, lyapunov_spectrum
from .measure import ProbeResult, ProbeSettings, probe

__all__ = ["GradientCurves", "ProbeHistory", "ProbeResult", "ProbeSettings", "curve_keys", "fit_curve",
           "gradient_curves", "layer_inputs", "lyapunov_spectra", "lyapunov_spectrum", "noise_floor", "probe",
           "probe_loss_steps", "probe_mode"]
