"""Many runs, one model: a population of same-shaped runs trained together (issue 20).

Most of the lab's sweeps are small models (H = 32-64), where a training step costs per-op overhead,
not arithmetic. Runs whose configs differ only in *batchable* knobs (the seed, the learning rate, the
init scheme and scale: ``BATCHABLE``) have the same shapes, so M of them can run as one model with a
leading member dimension M: every weight becomes (M, ...), every matmul a batched one.

What is shared and what is not (DESIGN.md, "One loop, many members"):
  * shared: only the training step's forward and backward. ``Population.__call__`` stacks the
    members' own parameters (one ``torch.stack`` per parameter, which autograd splits back into each
    member's ``.grad``) and runs the template model on them through ``torch.func.functional_call``
    with ``path="members"``: each layer's ``forward_members``, which for the tanh/relu/sigmoid/linear
    RNN, the GRU and the LSTM is the whole recurrence as one autograd node with a hand-written backward
    (``seqlab.models.members``), for the mlp its fast path, and for the other cells their step path
    (which takes a leading member dim: ``seqlab.models.base.matmul``/``vector``). The members' losses
    are summed before the backward; they are independent, so the sum's gradient with respect to each
    member's weights is that member's own gradient.
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

import json

import torch
from omegaconf import DictConfig, OmegaConf
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
DOES_NOT_BUILD = "its config does not build"
# The most work per population, in batch x time steps x hidden units summed over its members: measured on
# this 2-core machine (benchmarks/population_sizes.py, GRU, adding T=200, H=64, B=64, quiet, 17:15 UTC),
# a training step cost 84 ms per member alone, and per member 63 ms in a population of 4, 57 ms in one of
# 8 and 67 ms in one of 16 (its saved activations 650 MB against 325 MB): 8 such members per population.
MEMBER_WORK = 8 * 64 * 200 * 64


def members_cap(cfg: DictConfig) -> int | None:
    """The most members a population of ``cfg``'s runs should have (``MEMBER_WORK`` over one run's
    batch x T x hidden units), or None when the config does not say those sizes."""
    sizes = (cfg.get("batch_size"), cfg.get("seq_len"), cfg.get("model", {}).get("hidden_size"))
    if not all(isinstance(v, int) and v > 0 for v in sizes):
        return None
    return max(1, MEMBER_WORK // (sizes[0] * sizes[1] * sizes[2]))


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
        return functional_call(self.template, stacked, (inputs,), {"path": "members", "steps": steps})


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
    tree = {key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
            for key, value in cfg.items() if key != "hydra"}  # no copy of the whole config (Hydra's node is big)
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
        return f"{DOES_NOT_BUILD} ({type(e).__name__})"
    return population_support([model])


# The per-member halves of a training step that used to run member by member (a quarter of a population's
# step at the trainability preset's sizes: 16 Adam steps 9.5 ms and 16 clippings 3.2 ms of 52 ms), each done
# for all members in a few foreach calls. Each member keeps its own global norm, learning rate, optimizer
# state (its torch.optim instance's ``state``, so its state dict and checkpoint are unchanged) and hooks;
# the arithmetic is torch's own (``clip_grad_norm_``'s and Adam's foreach path), so a member's update
# equals its own ``clip_grad_norm_`` and ``optimizer.step()`` (tests/test_population_step.py).

_ADAM_PLAIN = dict(foreach=None, fused=None, capturable=False, differentiable=False)


@torch.no_grad()
def clip_members(params: list[list[torch.Tensor]], max_norms: list[float]) -> list[torch.Tensor]:
    """``torch.nn.utils.clip_grad_norm_(params[m], max_norms[m])`` for every member m, in one pass: each
    member's pre-clip global norm (returned, a 0-d tensor each) over its own gradients, and its own
    gradients scaled by min(max_norm / (norm + 1e-6), 1), as ``clip_grad_norm_`` computes them."""
    grads = [[p.grad for p in ps if p.grad is not None] for ps in params]
    flat = [g for gs in grads for g in gs]
    if not flat:
        return [torch.tensor(0.0) for _ in params]
    norms = iter(torch._foreach_norm(flat, 2.0))
    totals = [torch.linalg.vector_norm(torch.stack([next(norms) for _ in gs]), 2.0) if gs else torch.tensor(0.0)
              for gs in grads]
    coefs = [torch.clamp(float(max_norm) / (total + 1e-6), max=1.0) for max_norm, total in zip(max_norms, totals)]
    torch._foreach_mul_(flat, [coef for gs, coef in zip(grads, coefs) for _ in gs])
    return totals


def _stackable(optimizer: torch.optim.Optimizer) -> bool:
    """A plain ``torch.optim.Adam`` (no fused/capturable/differentiable/foreach choice, no pre-step hook):
    its step can join the members' one foreach step."""
    from torch.optim.optimizer import _global_optimizer_pre_hooks

    return (type(optimizer) is torch.optim.Adam and not optimizer._optimizer_step_pre_hooks
            and not _global_optimizer_pre_hooks
            and all(group.get(k) == v for group in optimizer.param_groups for k, v in _ADAM_PLAIN.items())
            and all(not torch.is_tensor(group["lr"]) for group in optimizer.param_groups))


@torch.no_grad()
def step_members(optimizers: list[torch.optim.Optimizer]) -> None:
    """``optimizer.step()`` of every member, the plain Adams among them as one foreach update per set of
    hyperparameters (learning rate, betas, eps, weight decay, ...), each member's tensors with its own
    learning rate and its own state (``optimizer.state``: its state dict and checkpoint are the lone run's);
    then each optimizer's post-step hooks (per-layer update ratios), as ``step()`` runs them. Any other
    optimizer steps on its own."""
    from torch.optim.adam import adam
    from torch.optim.optimizer import _global_optimizer_post_hooks

    buckets: dict[tuple, list[list]] = {}
    stacked = []
    for optimizer in optimizers:
        if not _stackable(optimizer):
            optimizer.step()
            continue
        stacked.append(optimizer)
        for group in optimizer.param_groups:
            lists: list[list] = [[], [], [], [], [], []]  # params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps
            has_complex = optimizer._init_group(group, *lists)
            hyper = (group["lr"], *group["betas"], group["eps"], group["weight_decay"], group["amsgrad"],
                     group["maximize"], group.get("decoupled_weight_decay", False), has_complex)
            bucket = buckets.setdefault(hyper, [[], [], [], [], [], []])
            for into, items in zip(bucket, lists):
                into.extend(items)
    for (lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled, has_complex), lists in buckets.items():
        if lists[0]:
            adam(*lists, foreach=True, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                 amsgrad=amsgrad, maximize=maximize, has_complex=has_complex, capturable=False,
                 differentiable=False, fused=None, grad_scale=None, found_inf=None,
                 decoupled_weight_decay=decoupled)
    for optimizer in stacked:
        optimizer._optimizer_step_code()
        for hook in (*optimizer._optimizer_step_post_hooks.values(), *_global_optimizer_post_hooks.values()):
            hook(optimizer, (optimizer,), {})
