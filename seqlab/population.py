"""Many runs, one model: a population of same-shaped runs trained together (issue 20).

Most of the lab's sweeps are small models (H = 32-64), where a training step costs per-op overhead,
not arithmetic. Runs whose configs differ only in *batchable* knobs (the seed, the learning rate, the
init scheme and scale: ``BATCHABLE``) have the same shapes, so M of them can run as one model with a
leading member dimension M: every weight becomes (M, ...), every matmul a batched one.

What is shared and what is not (DESIGN.md, "One loop, many members"):
  * shared: only the training step's forward and backward. ``Population.__call__`` stacks the
    members' own parameters (one ``torch.stack`` per parameter, which autograd splits back into each
    member's ``.grad``) and runs the template model's step path (``path="step"``) on them through
    ``torch.func.functional_call``: the same cells, whose step path takes a leading member dim
    (``seqlab.models.base.matmul``/``vector``). The members' losses are summed before the backward;
    they are independent, so the sum's gradient with respect to each member's weights is that
    member's own gradient.
  * each member's own: everything else, in ``seqlab.train`` (the one loop): its model object (built
    from its own seed exactly as a run alone builds it), data stream, clipping (its own global norm),
    optimizer and learning rate, non-finite policy (a NaN ends that member only), solved step,
    evaluations, probe, checkpoint, run directory and W&B run. So a member writes what the same run
    alone writes, equal to float rounding (the batched step path against the fused kernel).
  * the probe's Lyapunov spectra, each member's own, run as one batched QR loop over the members'
    stacked weights (``seqlab.probe.lyapunov.population_lyapunov_estimates``; ``train.probe_members``):
    at the lab's sizes the spectrum is most of a probe's cost.

``group_key`` says which jobs of a sweep can form one population (the Hydra launcher
``hydra/launcher=batched``, hydra_plugins/seqlab_batched_launcher, groups them with it).
"""
from __future__ import annotations

import copy
import json

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.func import functional_call

# Knobs that may differ between the members of one population: they change values, never shapes.
BATCHABLE = (
    "seed",
    "optim.lr",
    "model.layer.init", "model.layer.recurrent_gain", "model.layer.gain",  # init scheme and scale
    "model.layer.forget_bias", "model.layer.update_bias", "model.layer.chrono",  # gate-bias inits
    "model.readout_init",
)
# Knobs that change nothing a run computes (how it is watched, where it resumes from).
NOT_COMPUTED = ("progress", "resume", "logger", "checkpoint_every")


class Population:
    """The batched forward of M same-shaped ``SequenceModel``s: (M, B, T, D) -> (M, B, T, O)."""

    def __init__(self, models: list[torch.nn.Module]):
        why = population_support(models)
        if why is not None:
            raise ValueError(f"these models cannot train as one population: {why}")
        self.template = models[0]
        self.names = [name for name, _ in self.template.named_parameters()]

    def __call__(self, models: list[torch.nn.Module], inputs: torch.Tensor,
                 steps: torch.Tensor | None = None) -> torch.Tensor:
        """``models``' outputs on their own inputs (M, B, T, D), in one batched pass of the step path."""
        per_model = [list(m.parameters()) for m in models]
        stacked = {name: torch.stack([params[i] for params in per_model]) for i, name in enumerate(self.names)}
        return functional_call(self.template, stacked, (inputs,), {"path": "step", "steps": steps})


def population_support(models: list[torch.nn.Module]) -> str | None:
    """None when ``models`` can train as one population; else why not, in one line."""
    first = models[0]
    why = first.population_support() if hasattr(first, "population_support") else "not a SequenceModel"
    if why is not None:
        return why
    shapes = [(n, tuple(p.shape)) for n, p in first.named_parameters()]
    for m in models[1:]:
        if [(n, tuple(p.shape)) for n, p in m.named_parameters()] != shapes:
            return "their parameters differ in shape"
    if any(True for _ in first.buffers()):
        return "the model has buffers (running statistics) with no member dimension"
    return None


def _drop(tree: dict, dotted: str) -> None:
    *path, last = dotted.split(".")
    for key in path:
        tree = tree.get(key)
        if not isinstance(tree, dict):
            return
    tree.pop(last, None)


def group_key(cfg: DictConfig) -> str:
    """Jobs with the same key differ only in ``BATCHABLE`` knobs (and in ``NOT_COMPUTED`` ones), so they
    can train as one population: the resolved config with those knobs removed, as JSON."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.pop("hydra", None)
    tree = OmegaConf.to_container(cfg, resolve=True)
    for key in (*BATCHABLE, *NOT_COMPUTED):
        _drop(tree, key)
    return json.dumps(tree, sort_keys=True, default=str)


def batchable(cfg: DictConfig) -> str | None:
    """None when a run of ``cfg`` can be a population member; else why not, in one line (its model's
    reason, e.g. 'LRULayer: its step path has no member dimension yet', or flossing)."""
    from .config import build_model, build_task

    if cfg.get("floss") and "_target_" in cfg.floss:
        return "gradient flossing (floss) runs per run, unbatched"
    try:
        task = build_task(cfg)
        with torch.device("meta"):
            model = build_model(cfg, task)
    except Exception as e:  # noqa: BLE001 - the job itself will report its bad config
        return f"its config does not build ({type(e).__name__})"
    return population_support([model])
