"""The exact total derivative dL_tau/ds_t through time, against the lag k = tau - t.

Glossary: B batch, T time, H hidden units, S a state kind of one layer (h, or
h and c for an LSTM), L loss steps used, K lags (0 .. K-1), N = L * B samples
of each lag.

How (LITERATURE.md, "The gradient through time"): the model runs its step path
with a zero tap added to every state it forms; the gradient of a loss with
respect to a tap is the total derivative of that loss with respect to the state
at that step, through every later step and every layer above. Examples are
independent, so the gradient of the *sum* over the batch of the loss at step tau
hands each example its own dL_tau/ds_t in one backward pass; norms are taken per
example, then summarized over the batch (mean and quartiles).

A task with one loss step (adding, delayed recall) gives one backward. A task
with several (copy) gives one backward per loss step used: the steps that carry
the long-range answer (``Task.answer_steps``), at most ``max_loss_steps`` of them,
evenly spaced. Lags run from 0 to the smallest tau used, so that every lag is
the mean over the same loss steps.

A task whose answer steps vary per example (its batch carries a ``mask``:
flip-flop, MQAR, temporal order) is probed from each example's *own* answer
steps: at most ``max_loss_steps`` of them per example, evenly spaced over that
example's answers, and the j-th backward differentiates the sum over examples
of each one's j-th answer loss. The lag k is then counted back from that
example's answer step; lags run up to the largest tau used, and g(k) is the
mean over the (answer, example) pairs whose tau >= k (fewer pairs at the
longest lags: read the curve with the task's lag distribution in summary.json).

Depth and time are one grid (DESIGN.md): a state sits at (layer l, step t), and
the same backward gives dL_tau/ds^(l)_(tau-k) for every layer l and lag k. The
curves are stored per key (state kind and layer: 'h_l0', 'h_l1', ...), and
``GradientCurves.grid`` stacks them into the (layer x lag) grid: a row is the
time curve of one layer, a column the depth curve at one lag. Column 0, the
states at the loss step itself, is the pure depth product (nothing later in
time reaches L_tau), the feedforward case. Two more depth quantities come from
the same backward:
  * ``total[key]``: ||dL_tau/ds^(l)_t|| over all t at once (the whole sequence's
    gradient reaching layer l, which is what its input weights see);
  * ``param_grad_norm[group]``: ||dL/dtheta_g|| of the training loss on the probe
    batch for every parameter group (layer l's weights and biases, the readout):
    the textbook "gradient in layer l".
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..models import SequenceModel
from ..tasks import Batch, Task

QUANTILES = (0.25, 0.5, 0.75)
_LAYER_PARAM = re.compile(r"^layers\.(\d+)\.")
_BETWEEN_PARAM = re.compile(r"^between\.(\d+)\.")  # SequenceModel's norm on the input of layer i + 1


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters by layer: 'l0', 'l1', ... for ``model.layers[i]`` (the layer whose
    output is curve key ``h_l{i}``; a norm between layers, ``between[i - 1]``, counts as part of
    layer i, whose input it normalizes), and one group per other top-level module (e.g.
    'readout'). Every trainable parameter is in exactly one group; layers in order, then the rest."""
    layers: dict[int, list[nn.Parameter]] = {}
    other: dict[str, list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        m, b = _LAYER_PARAM.match(name), _BETWEEN_PARAM.match(name)
        if m or b:
            layers.setdefault(int(m[1]) if m else int(b[1]) + 1, []).append(p)
        else:
            other.setdefault(name.split(".")[0], []).append(p)
    return {**{f"l{i}": layers[i] for i in sorted(layers)}, **other}


def group_layer(group: str, n_layers: int) -> int:
    """Position of a parameter group on the depth axis: 'l{i}' -> i; anything else (the readout,
    which sits on top of the last layer) -> ``n_layers``."""
    m = re.fullmatch(r"l(\d+)", group)
    return int(m[1]) if m else n_layers


@contextmanager
def probe_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Train mode with dropout off; every module's own mode and every buffer restored afterwards.

    Train mode because that is the function being trained (and cuDNN's RNN
    backward needs it); dropout off because the probe measures the network, not
    one draw of its masks (and must not consume the global RNG). Batch norm
    therefore normalizes with the probe batch's own statistics, as in training;
    the running statistics it updates in train mode (and every other buffer) are
    put back on the way out, so the model's state after a probe is bit for bit
    what it was before, and training is the same with the probe on or off.
    """
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()
    try:
        # parametrized weights (e.g. orthogonal ones) computed once, not at every step
        with torch.enable_grad(), parametrize.cached():
            yield model
    finally:
        for m, mode in modes:
            m.training = mode
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


def curve_keys(model: SequenceModel) -> list[str]:
    """One curve per state kind and layer: 'h_l0', 'c_l0', 'h_l1', ..."""
    return [f"{name}_l{i}" for i, layer in enumerate(model.layers) for name in layer.state_names]


def probe_loss_steps(task: Task, max_loss_steps: int | None = None) -> torch.Tensor:
    """(L,) the loss steps the curves are measured from: the answer steps, at most
    ``max_loss_steps`` of them, evenly spaced and always including the first."""
    answer = task.answer_steps
    if max_loss_steps is None or len(answer) <= max_loss_steps:
        return answer
    pick = torch.linspace(0, len(answer) - 1, max_loss_steps).round().long()
    return answer[pick]


@dataclass
class GradientCurves:
    """The measured curves of one probe; every array is float64 numpy.

    ``mean[key][k]`` is the mean over the N = L * B (loss step, example) pairs of
    ||dL_tau/ds_(tau - k)|| for the state kind and layer named by ``key``.
    """

    lags: np.ndarray                      # (K,) 0 .. K-1
    loss_steps: np.ndarray                # (L,) the tau the lags are counted from
    mean: dict[str, np.ndarray]           # key -> (K,)
    quartiles: dict[str, np.ndarray]      # key -> (3, K): 25%, 50%, 75% over the N samples
    per_loss_step: dict[str, np.ndarray]  # key -> (L, K): batch mean, each loss step's own curve
    dtype: torch.dtype = torch.float32    # the model's dtype (sets the noise floor of the fits)
    total: dict[str, float] = field(default_factory=dict)  # key -> mean of ||dL_tau/ds_t|| over all t at once
    param_grad_norm: dict[str, float] = field(default_factory=dict)  # group -> ||dL/dtheta_g|| (training loss)

    @property
    def keys(self) -> list[str]:
        return list(self.mean)

    @property
    def states(self) -> list[str]:
        """State kinds in key order: ['h'], or ['h', 'c'] for an LSTM."""
        return list(dict.fromkeys(key.rsplit("_l", 1)[0] for key in self.keys))

    @property
    def n_layers(self) -> int:
        return len({key.rsplit("_l", 1)[1] for key in self.keys})

    def grid(self, state: str = "h", stat: str = "mean") -> np.ndarray:
        """(NL, K) ``stat`` ('mean', 'q25', 'q50', 'q75') of ||dL/ds^(l)_(tau-k)|| over layer l x lag k."""
        rows = [f"{state}_l{i}" for i in range(self.n_layers)]
        if stat == "mean":
            return np.stack([self.mean[key] for key in rows])
        i = {"q25": 0, "q50": 1, "q75": 2}[stat]
        return np.stack([self.quartiles[key][i] for key in rows])


def gradient_curves(model: SequenceModel, task: Task, batch: Batch,
                    max_loss_steps: int | None = None) -> GradientCurves:
    """Exact ||dL_tau/ds^(l)_(tau-k)|| for every state kind, layer and lag on one batch, the
    whole-sequence norms ``total`` and the per-group parameter-gradient norms.

    Pure: reads the parameters as they are, changes nothing (no .grad, no RNG,
    the modes of the modules restored).
    """
    if batch.mask is not None:
        return _per_example_curves(model, task, batch, max_loss_steps)
    steps = probe_loss_steps(task, max_loss_steps)  # (L,)
    all_steps = task.loss_steps.tolist()
    cols = [all_steps.index(s) for s in steps.tolist()]  # positions in loss_per_step's output
    x = batch.inputs
    B, T = x.shape[:2]
    K = int(steps.min()) + 1
    keys = curve_keys(model)
    groups = parameter_groups(model)
    params = [p for ps in groups.values() for p in ps]
    # task.loss is the mean over the batch and *all* loss steps: when the probed steps are all of
    # them, its parameter gradient is the sum of the probe's backwards / (B * L); otherwise
    # (copy probes 2 of its answer steps) one more backward of the loss itself.
    covers = len(cols) == len(all_steps)
    with probe_mode(model):
        taps = [{name: tap.detach().to(x.dtype).requires_grad_() for name, tap in layer.items()}
                for layer in model.make_taps(B, T, device=x.device)]  # the model's dtype (float64 in tests)
        flat = [tap for layer in taps for tap in layer.values()]  # in curve_keys order
        outputs = model(x, taps=taps, steps=task.loss_steps)  # (B, T, O), read out at the loss steps only
        per_step = task.loss_per_step(outputs, batch)  # (L_task,) batch means
        losses = (per_step * B)[cols]  # (L,) sums over the batch
        norms = {key: [] for key in keys}  # key -> L x (B, K)
        totals = {key: [] for key in keys}  # key -> L x (B,)
        param_grads = [torch.zeros_like(p) for p in params]
        # One backward per loss step. Batched VJPs (is_grads_batched) timed from equal to ~20% faster
        # on a busy CPU (benchmarks/probe_cost.py), but hold L copies of every gradient at once
        # (copy, T=1000, L=10: ~1 GB) and need vmap rules from every future cell.
        for j, tau in enumerate(steps.tolist()):
            wrt = flat + params if covers else flat
            grads = torch.autograd.grad(losses[j], wrt, retain_graph=j < len(cols) - 1 or not covers,
                                        allow_unused=True, materialize_grads=True)
            for key, g in zip(keys, grads):  # g: (B, T, H)
                g = g.detach().double()  # float64: a float32 sum of squares underflows below ~1e-19
                window = g[:, tau - K + 1:tau + 1]  # (B, K, H), t = tau-K+1 .. tau
                norms[key].append(torch.linalg.vector_norm(window, dim=-1).flip(-1))  # (B, K), lag order
                totals[key].append(torch.linalg.vector_norm(g, dim=(1, 2)))  # (B,): all t <= tau at once
            for acc, g in zip(param_grads, grads[len(flat):]):
                acc += g.detach() / (B * len(all_steps))
        if not covers:
            param_grads = torch.autograd.grad(task.loss(outputs, batch), params, allow_unused=True,
                                              materialize_grads=True)
    mean, quartiles, per_loss_step, total = {}, {}, {}, {}
    q = torch.tensor(QUANTILES, dtype=torch.float64)
    for key in keys:
        n = torch.stack(norms[key])  # (L, B, K)
        mean[key] = n.mean(dim=(0, 1)).cpu().numpy()
        quartiles[key] = torch.quantile(n.flatten(0, 1), q.to(n.device), dim=0).cpu().numpy()  # (3, K)
        per_loss_step[key] = n.mean(dim=1).cpu().numpy()
        total[key] = float(torch.stack(totals[key]).mean())
    return GradientCurves(lags=np.arange(K), loss_steps=steps.numpy(), mean=mean, quartiles=quartiles,
                          per_loss_step=per_loss_step, dtype=x.dtype, total=total,
                          param_grad_norm=_group_norms(groups, param_grads))


def _group_norms(groups: dict[str, list[nn.Parameter]], grads) -> dict[str, float]:
    """group -> the float64 norm of its parameters' gradients (``grads`` in the groups' order)."""
    out, i = {}, 0
    for name, ps in groups.items():
        norms = [torch.linalg.vector_norm(g.detach().double()) for g in grads[i:i + len(ps)]]
        out[name] = float(torch.linalg.vector_norm(torch.stack(norms)))
        i += len(ps)
    return out


def per_example_answers(task: Task, batch: Batch, max_loss_steps: int | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """For a masked batch: (L, B) columns of ``task.loss_steps`` holding each example's j-th probed
    answer (evenly spaced over its own answers, first and last included), and (L, B) bool, False
    where example b has no distinct j-th answer (fewer answers than L)."""
    all_steps = task.loss_steps.tolist()
    answer_cols = torch.tensor([all_steps.index(s) for s in task.answer_steps.tolist()])
    m = batch.mask[:, answer_cols.to(batch.mask.device)].cpu()  # (B, A)
    counts = m.sum(1)  # (B,) answers per example
    L = int(counts.max()) if max_loss_steps is None else max_loss_steps
    frac = torch.linspace(0, 1, L, dtype=torch.float64) if L > 1 else torch.zeros(1, dtype=torch.float64)
    pick = (frac[:, None] * (counts - 1).clamp(min=0)).round().long()  # (L, B) rank among the answers
    valid = (counts > 0).expand(L, -1).clone()
    valid[1:] &= pick[1:] != pick[:-1]  # a repeated rank (too few answers) is probed once
    rank = m.long().cumsum(1) - 1  # (B, A)
    hit = m.unsqueeze(0) & (rank.unsqueeze(0) == pick.unsqueeze(-1))  # (L, B, A)
    return answer_cols[hit.long().argmax(-1)], valid


def _per_example_curves(model: SequenceModel, task: Task, batch: Batch,
                        max_loss_steps: int | None) -> GradientCurves:
    """``gradient_curves`` for a masked batch: lags counted back from each example's own answer steps."""
    cols, valid = per_example_answers(task, batch, max_loss_steps)  # (L, B) each
    x = batch.inputs
    B, T = x.shape[:2]
    taus = task.loss_steps[cols]  # (L, B)
    K = int(taus[valid].max()) + 1
    lag = torch.arange(K)
    keys = curve_keys(model)
    rows = torch.arange(B, device=x.device).unsqueeze(1)  # (B, 1)
    used = [j for j in range(len(cols)) if valid[j].any()]
    groups = parameter_groups(model)
    with probe_mode(model):
        taps = [{name: tap.detach().to(x.dtype).requires_grad_() for name, tap in layer.items()}
                for layer in model.make_taps(B, T, device=x.device)]
        flat = [tap for layer in taps for tap in layer.values()]
        outputs = model(x, taps=taps, steps=task.loss_steps)  # (B, T, O)
        elements = task.loss_elements(outputs, batch)  # (B, L_all)
        norms = {key: [] for key in keys}  # key -> L x (B, K), nan where there is no such lag
        totals = {key: [] for key in keys}  # key -> L x (B,), nan where example b has no j-th answer
        for n_done, j in enumerate(used):
            loss_j = (elements.gather(1, cols[j].to(x.device).unsqueeze(1)).squeeze(1)
                      * valid[j].to(x.device, elements.dtype)).sum()  # each example's j-th answer loss, summed
            grads = torch.autograd.grad(loss_j, flat, retain_graph=True, allow_unused=True, materialize_grads=True)
            t = taus[j].unsqueeze(1) - lag  # (B, K): the step k back from each example's own tau
            ok = (t >= 0) & valid[j].unsqueeze(1)
            for key, g in zip(keys, grads):  # g: (B, T, H)
                window = g.detach()[rows, t.clamp(min=0).to(x.device)].double()  # (B, K, H), lag order
                n = torch.linalg.vector_norm(window, dim=-1)
                norms[key].append(n.masked_fill(~ok.to(n.device), float("nan")))
                total = torch.linalg.vector_norm(g.detach().double(), dim=(1, 2))  # (B,) all t at once
                totals[key].append(total.masked_fill(~valid[j].to(total.device), float("nan")))
        param_grads = torch.autograd.grad(task.loss(outputs, batch), [p for ps in groups.values() for p in ps],
                                          allow_unused=True, materialize_grads=True)
    mean, quartiles, per_loss_step, total = {}, {}, {}, {}
    q = torch.tensor(QUANTILES, dtype=torch.float64)
    for key in keys:
        n = torch.stack(norms[key])  # (L, B, K)
        mean[key] = n.nanmean(dim=(0, 1)).cpu().numpy()
        quartiles[key] = torch.nanquantile(n.flatten(0, 1), q.to(n.device), dim=0).cpu().numpy()  # (3, K)
        per_loss_step[key] = n.nanmean(dim=1).cpu().numpy()
        total[key] = float(torch.stack(totals[key]).nanmean())
    # the tau of each probed answer varies per example: loss_steps records the median over the batch
    loss_steps = np.array([int(taus[j][valid[j]].double().median()) for j in used], dtype=np.int64)
    return GradientCurves(lags=np.arange(K), loss_steps=loss_steps, mean=mean, quartiles=quartiles,
                          per_loss_step=per_loss_step, dtype=x.dtype, total=total,
                          param_grad_norm=_group_norms(groups, param_grads))
