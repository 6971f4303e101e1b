"""``hydra/launcher=batched``: a multirun whose same-shaped jobs train together, one population each.

    python -m seqlab -m hydra/launcher=batched model=gru seed=0,1,2,3,4,5,6,7 optim.lr=1e-3,3e-3

The launcher composes every job's config as Hydra's basic launcher does, then groups the jobs whose
configs differ only in batchable knobs (seed, learning rate, init scheme and scale, gate-bias inits:
``seqlab.population.BATCHABLE``) and whose model can take a member dimension. Each group (up to
``max_members`` jobs) trains as one population in one process (``seqlab.train.train_members``); a job
that cannot join a group runs as usual, through the same task function as under the basic launcher,
after one line saying why. Every job still gets its own directory, with Hydra's ``.hydra/`` files and
everything a run alone writes, and its own line and return value (a diverged member fails only its own
job). ``n_jobs`` > 1 runs that many groups at once, each in a worker process (joblib's loky, as
``hydra/launcher=parallel``).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


class BatchedLauncher(Launcher):
    def __init__(self, max_members: int = 64, n_jobs: int = 1, verbose: int = 0, **_: Any) -> None:
        self.max_members, self.n_jobs, self.verbose = max_members, n_jobs, verbose
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        # Hydra's sweeper composes every job's config to validate the batch before it calls launch(); the
        # launcher needs the same configs (to group them), so it keeps those instead of composing each again
        # (a second compose of the trainability preset's 40 jobs took 17 s under load ~5), and the sweeper's
        # composing goes through SweepComposer (the same configs, composed in full once per structure).
        self._composed: dict = {}
        loader = hydra_context.config_loader
        compose = SweepComposer(loader.load_sweep_config)  # Hydra's compose, once per structure

        def remembering(master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
            cfg = compose(master_config, sweep_overrides)
            self._composed[(id(master_config), tuple(sweep_overrides))] = cfg  # the sweeper drops its copy
            return cfg

        loader.load_sweep_config = remembering  # an instance attribute: the loader's own method stays as it is
        # The workers start now, while the sweeper composes and validates the jobs: each imports torch and
        # seqlab (and builds a first optimizer, whose first use imports more of torch) before launch() needs
        # it; launch() then hands them the populations (joblib reuses the same loky workers).
        self._warming = None
        if self.n_jobs > 1:
            self._warming = threading.Thread(target=_start_workers, args=(self.n_jobs,), daemon=True)
            self._warming.start()

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        loader = self.hydra_context.config_loader
        remembering = loader.__dict__.pop("load_sweep_config", None)  # the workers get the plain loader
        try:
            return self._launch(job_overrides, initial_job_idx)
        finally:
            self._composed.clear()
            if remembering is not None:  # for the sweeper's next batch
                loader.load_sweep_config = remembering

    def _launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from seqlab.population import DOES_NOT_BUILD, batchable, group_key, members_cap

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        jobs, keys = [], {}
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            cfg = (self._composed.pop((id(self.config), tuple(overrides)), None)
                   or self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides)))
            with open_dict(cfg):
                cfg.hydra.job.id = idx
                cfg.hydra.job.num = idx
            jobs.append((idx, list(overrides), cfg))
            keys.setdefault(group_key(cfg), []).append(len(jobs) - 1)
        groups, caps, alone = [], [], []
        for members in keys.values():
            # Jobs of one group differ only in batchable knobs, so one job's model answers for all of them;
            # a config that does not build is looked at job by job (the bad one runs alone and says why).
            why = batchable(jobs[members[0]][2])
            whys = [why] * len(members) if why is None or not why.startswith(DOES_NOT_BUILD) else [
                batchable(jobs[j][2]) for j in members]
            groups.append([j for j, why in zip(members, whys) if why is None])
            caps.append(members_cap(jobs[members[0]][2]) or self.max_members)  # smaller at large sizes
            alone += [(j, why) for j, why in zip(members, whys) if why is not None]
        plan = plan_populations([g for g in groups if g], self.max_members, self.n_jobs,
                                [c for g, c in zip(groups, caps) if g])
        for j, why in alone:
            print(f"seqlab: job {jobs[j][0]} ({' '.join(filter_overrides(jobs[j][1])) or 'defaults'}) runs "
                  f"unbatched: {why}", file=sys.stderr, flush=True)
            plan.append([j])
        sizes = sorted((len(p) for p in plan if len(p) > 1), reverse=True)
        members = f" ({' + '.join(map(str, sizes))} members)" if sizes else ""
        cores = os.cpu_count() or 1
        serial = (f", one after another (hydra.launcher.n_jobs={cores} runs {cores} at once on this machine's "
                  f"{cores} cores)") if self.n_jobs == 1 and len(plan) > 1 and cores > 1 else ""
        log.info(f"Launching {len(jobs)} jobs: {_count(len(sizes), 'population')}{members}, "
                 f"{_count(sum(len(p) == 1 for p in plan), 'job')} alone{serial}")
        work = [[jobs[j] for j in members] for members in plan]
        if self._warming is not None:
            self._warming.join()
        if self.n_jobs == 1 or len(work) == 1:
            done = [run_group(group, self.hydra_context, self.task_function) for group in work]
        else:
            from joblib import Parallel, delayed

            state = Singleton.get_state()
            done = Parallel(n_jobs=self.n_jobs, backend="loky", verbose=self.verbose)(
                delayed(_worker)(group, self.hydra_context, self.task_function, state) for group in work)
        by_idx = {ret_idx: ret for group in done for ret_idx, ret in group}
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return [by_idx[idx] for idx, _, _ in jobs]


class SweepComposer:
    """Hydra's ``load_sweep_config`` for each job, composed in full once per *structure*: jobs whose
    overrides differ only in plain values (``seed=1``, ``optim.lr=3e-3``, ``seq_len=40``: a scalar set on a
    key that holds a value, no config group, no ``+``/``~``/``@package``, nothing under ``hydra``) get a copy
    of the first such job's composed config with their values set the way Hydra sets them
    (``_apply_overrides_to_config``) and their own ``hydra.overrides.task`` and
    ``hydra.job.override_dirname``, as Hydra's compose writes them. The result equals Hydra's own, YAML
    for YAML, the hydra node included (tested; the trainability preset's 80 jobs at two lengths: equal, 6x
    faster). Anything else is composed in full."""

    def __init__(self, compose):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.compose, self.parser = compose, OverridesParser.create()
        self.bases: dict = {}  # structure -> a composed config to copy, or False: compose every job in full

    def __call__(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        import copy

        from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
        from hydra.core.override_parser.types import OverrideType, ValueType
        from omegaconf import OmegaConf

        overrides = self.parser.parse_overrides(list(sweep_overrides))
        groups = master_config.hydra.runtime.choices
        plain = [o for o in overrides if o.type == OverrideType.CHANGE and o.package is None
                 and not o.is_hydra_override() and o.value_type == ValueType.ELEMENT
                 and isinstance(o.value(), (bool, int, float, str)) and o.key_or_group not in groups]
        structure = (id(master_config), tuple(o.key_or_group if o in plain else o.input_line for o in overrides))
        base = self.bases.get(structure)
        if not base:
            cfg = self.compose(master_config, list(sweep_overrides))
            if base is None:
                values = all(not OmegaConf.is_config(OmegaConf.select(cfg, o.key_or_group, default=cfg))
                             and o.key_or_group not in cfg.hydra.runtime.choices for o in plain)
                self.bases[structure] = copy.deepcopy(cfg) if values else False
            return cfg
        cfg = copy.deepcopy(base)
        ConfigLoaderImpl._apply_overrides_to_config(plain, cfg)
        task = [o for o in overrides if not o.is_hydra_override()]
        dirname = cfg.hydra.job.config.override_dirname
        cfg.hydra.overrides.task = [o.input_line for o in task]
        cfg.hydra.job.override_dirname = get_overrides_dirname(
            overrides=task, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=dirname.exclude_keys)
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        return cfg


def plan_populations(groups: list[list[int]], max_members: int, n_jobs: int,
                     caps: list[int] | None = None) -> list[list[int]]:
    """The populations to train, largest first (the order the workers take them): each group cut into
    pieces of at most ``max_members`` jobs (and at most its ``caps`` entry: ``seqlab.population.members_cap``,
    fewer members per population where each member's work is large); then, while there are fewer populations than ``n_jobs``
    workers, the largest (of at least 4 jobs) is cut in two, so that no worker idles (one population runs
    on one core: a sweep of one group of 16 on 2 workers ran 1.24x faster than the parallel launcher at
    H = 64, T = 200, with one core idle); then a population is cut in two while that shortens the longest
    worker's share (``makespan``, jobs as the unit of work): the trainability preset's populations of 16,
    16 and 8 on 2 workers gave one worker 24 jobs' work and the other 16; 16, 16, 4 and 4 give 20 each."""
    caps = [min(max_members, cap) for cap in caps] if caps else [max_members] * len(groups)
    plan = [members[i:i + cap] for members, cap in zip(groups, caps) for i in range(0, len(members), cap)]
    while plan and len(plan) < n_jobs and max(map(len, plan)) >= 4:
        largest = max(plan, key=len)
        plan.remove(largest)
        half = (len(largest) + 1) // 2
        plan += [largest[:half], largest[half:]]
    while n_jobs > 1:
        best, cut = makespan(plan, n_jobs), None
        for piece in sorted((p for p in plan if len(p) >= 4), key=len):  # the smallest first: on a tie it wins
            half = (len(piece) + 1) // 2
            trial = [p for p in plan if p is not piece] + [piece[:half], piece[half:]]
            if makespan(trial, n_jobs) < best:
                best, cut = makespan(trial, n_jobs), trial
        if cut is None:
            break
        plan = cut
    return sorted(plan, key=len, reverse=True)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def makespan(plan: list[list[int]], n_jobs: int) -> int:
    """The most jobs any of ``n_jobs`` workers trains when each takes the next largest population as it
    frees up (as joblib hands them out in the plan's order, largest first)."""
    loads = [0] * n_jobs
    for size in sorted(map(len, plan), reverse=True):
        loads[loads.index(min(loads))] += size
    return max(loads)


def _start_workers(n_jobs: int) -> None:
    """Start the loky workers and let each import what a population needs (in a thread of the launcher)."""
    from joblib import Parallel, delayed

    try:
        Parallel(n_jobs=n_jobs, backend="loky")(delayed(_warm)(0.5) for _ in range(n_jobs))
    except Exception:  # noqa: BLE001 - only a head start: launch() starts the workers itself if this failed
        pass


def _warm(hold: float) -> int:
    import time

    import torch

    import seqlab.__main__  # noqa: F401
    import seqlab.train  # noqa: F401

    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # its first construction imports torch._dynamo
    time.sleep(hold)  # so that each worker takes one of these (none finishes before the other starts)
    return os.getpid()


def _worker(group, hydra_context, task_function, singleton_state):
    setup_globals()
    Singleton.set_state(singleton_state)
    return run_group(group, hydra_context, task_function)


def _member(task_cfg: DictConfig):
    """The task function of a population's job under ``run_job``: its run information, and Hydra's record
    of it to write once the run has accepted its directory (seqlab.rundir.accept), as a lone job does."""
    import copy

    from hydra.core.hydra_config import HydraConfig

    from seqlab.__main__ import current_job
    from seqlab.rundir import accept

    job = current_job(task_cfg)
    hydra_cfg = copy.deepcopy(HydraConfig.instance().cfg)
    job.info.on_accept = lambda: accept(job.info.run_dir, task_cfg, hydra_cfg)
    return task_cfg, job


def run_group(group: list, hydra_context: HydraContext, task_function: TaskFunction) -> list[tuple[int, JobReturn]]:
    """Run one job as Hydra would, or a population: every job's directory and ``.hydra/`` files are made
    by Hydra's ``run_job`` (with a task function that only reads the job's run information), then the
    members train together, and each job's return (its final loss, or its one-line failure) is set."""
    from seqlab.__main__ import report
    from seqlab.train import train_members

    if len(group) == 1:
        idx, _, cfg = group[0]
        return [(idx, run_job(hydra_context=hydra_context, task_function=task_function, config=cfg,
                              job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))]
    returns, jobs, cfgs = [], [], []
    for idx, _, cfg in group:
        ret = run_job(hydra_context=hydra_context, task_function=_member, config=cfg,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        task_cfg, job = ret.return_value
        returns.append((idx, ret))
        jobs.append(job)
        cfgs.append(task_cfg)
    outcomes = train_members(cfgs, [job.info for job in jobs])
    for (idx, ret), job, outcome in zip(returns, jobs, outcomes):
        try:
            ret.return_value, ret.status = report(job, outcome), JobStatus.COMPLETED
        except Exception as e:  # noqa: BLE001 - a failed job: Hydra re-raises it after the sweep, as usual
            ret.return_value, ret.status = e, JobStatus.FAILED
    return returns
