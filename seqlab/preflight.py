"""The check before Hydra runs anything: every value a command line asks for, composed and validated.

``python -m seqlab ...`` calls ``preflight(argv)`` before Hydra creates an output directory, a
sweep directory or a W&B run. A bad value ends in one line naming the key, the value and what is
allowed (``seqlab: error: KEY=VALUE: ...``), exit code 2, and nothing written.

A sweep is checked value by value, not job by job: every distinct value of every swept key is
composed and validated (with the other keys at their first value), and so is the combination of
every numeric axis at its largest value (the biggest run, for the memory check). Up to
``FULL_PRODUCT`` jobs the whole product is checked instead, which also catches values that are
only wrong together (``model=rnn,lstm model.layer.forget_bias=1``). A long numeric axis
(``seed=range(0,100000)``) has every value checked against its rule in ``seqlab.config.KNOBS``
and its first, smallest and largest values composed. Sweeper and launcher settings are checked
too: their knobs (``hydra.launcher.n_jobs``, ``hydra.sweeper.n_trials``, ...) against KNOBS, an
``interval`` only where a sweeper searches one and only the right way round, an Optuna storage
that can be opened, and a comma list only with ``-m``.
"""
from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf, open_dict

from .argv import fail, is_multirun, overrides_from_argv, parse_args  # noqa: F401  (fail: re-exported)
from .checks import ConfigError, is_number
from . import _paths

FULL_PRODUCT = 256     # sweeps up to this many jobs are checked job by job
LONG_AXIS = 16         # a numeric axis longer than this: all values against KNOBS, extremes composed
BASIC_SWEEPER = "BasicSweeper"


_args = parse_args  # the names the rest of the lab imported from here
_overrides_from_argv = overrides_from_argv


def _one_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("full_key", "object_type", "reference_type"))]
    return " ".join(lines)


class Axis:
    """One key of the command line: its 'key=value' strings and, when all are numbers, the numbers."""

    def __init__(self, key: str, strings: list[str], numbers: list[float] | None = None, group: bool = False):
        self.key, self.strings, self.numbers, self.group = key, strings, numbers, group


def preflight(argv: list[str], config_name: str = "config", check: Callable[[DictConfig], None] | None = None) -> None:
    """Compose and validate every value asked for; exit 2 with one line on the first error.

    Another entry point (``python -m seqlab.probe``) passes its primary config and its own ``check``.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from .completion import handle

    handle(argv)  # -sc install=bash prints seqlab's completion script; a query is put in the form Hydra reads
    overrides = _overrides_from_argv(argv)
    if overrides is None:
        return
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as e:  # a syntax error in an override
        fail(_hydra_message(_one_line(e)))
    multirun = is_multirun(argv)
    if not multirun:
        for o in parsed:
            if o.is_sweep_override():
                fail(f"{o.input_line}: a sweep runs only with -m (python -m seqlab -m {o.input_line} ...)")
    axes = _axes(parsed)
    with initialize_config_dir(config_dir=str(_paths.CONF_DIR), version_base="1.3"):
        if multirun:  # a sweep the config itself declares (experiment presets, hparams_search)
            axes, sweeper = _with_sweeper_params(compose, config_name, axes, parsed)
            _check_intervals(parsed, sweeper)
        needs_hydra = multirun or any(o.key_or_group.startswith("hydra") for o in parsed)
        composer = Composer(compose, config_name, needs_hydra, axes)
        for combo in combinations(axes):
            _check_remedy_model(combo)
            try:
                cfg = composer(combo)
            except Exception as e:
                fail(_sweeper_hint(_explain_missing_key(compose, config_name, combo, e) or _hydra_message(_one_line(e))))
            try:
                memory_bytes, where = (_check_hydra(cfg, multirun) if needs_hydra else (None, None))
                from .config import validate

                if memory_bytes is None:
                    validate(cfg)
                else:
                    validate(cfg, memory_bytes, where)
                if check is not None:
                    check(cfg)
            except ConfigError as e:
                fail(str(e))


class Composer:
    """Hydra's compose for each job's overrides, composed once per structure. Jobs that differ only in
    plain values (``seed=0,1 optim.lr=1e-3,1e-2 seq_len=20,40``: scalars set on keys the config has,
    no config group, no ``+``/``~``, nothing under ``hydra``) share one composed config, on a copy of
    which the values are set the way Hydra sets them (its ``_apply_overrides_to_config``). A 120-job
    preset then composes 5 times, not 120 (compose is ~0.3 s, the rest of a job's check ~0.01 s).
    Anything the shortcut cannot set is composed in full, which also gives Hydra's own error."""

    def __init__(self, compose, config_name: str, needs_hydra: bool, axes: dict[str, Axis]):
        self.compose, self.config_name, self.needs_hydra = compose, config_name, needs_hydra
        self.keys = list(axes)
        self.plain = {k: _plain_values(a) for k, a in axes.items() if len(a.strings) > 1 and not a.group}
        self.plain = {k: v for k, v in self.plain.items() if v is not None}
        self.composed: dict[tuple[str, ...], DictConfig] = {}

    def __call__(self, combo: tuple[str, ...]) -> DictConfig:
        import copy

        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        structure = tuple(s for k, s in zip(self.keys, combo) if k not in self.plain)
        base = self.composed.get(structure)
        if base is not None:
            cfg = copy.deepcopy(base)
            try:
                ConfigLoaderImpl._apply_overrides_to_config(
                    [self.plain[k][s] for k, s in zip(self.keys, combo) if k in self.plain], cfg)
                return cfg
            except Exception:  # noqa: BLE001 - composed in full below, which says what is wrong
                pass
        cfg = self.compose(config_name=self.config_name, overrides=list(combo), return_hydra_config=self.needs_hydra)
        if base is None:
            self.composed[structure] = copy.deepcopy(cfg)  # the checks change the config they are given
        return cfg


def _plain_values(axis: Axis) -> dict[str, object] | None:
    """'key=value' -> its parsed override, when every value of ``axis`` is a plain scalar set on an
    existing key outside ``hydra``; else None (the axis is composed job by job)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if axis.key.lstrip("+~").startswith("hydra"):
        return None
    try:
        parsed = OverridesParser.create().parse_overrides(list(axis.strings))
    except Exception:  # noqa: BLE001
        return None
    for o in parsed:
        if (o.is_delete() or o.is_add() or o.is_force_add() or o.package is not None or o.is_sweep_override()
                or not isinstance(o.value(), (int, float, str, bool, type(None)))):
            return None
    return dict(zip(axis.strings, parsed))


def combinations(axes: dict[str, Axis]) -> list[tuple[str, ...]]:
    """The override lists to compose: the full product up to FULL_PRODUCT jobs, else every distinct
    value of each key (others at their first value), config groups crossed while that stays small,
    and every numeric axis at its largest value. A long numeric axis is checked against KNOBS here."""
    keys = list(axes)
    if math.prod(len(a.strings) for a in axes.values()) <= FULL_PRODUCT:
        return list(itertools.product(*(axes[k].strings for k in keys)))
    for a in axes.values():
        if a.numbers is not None and len(a.strings) > LONG_AXIS:
            _check_against_table(a)
    groups = [k for k in keys if axes[k].group]
    crossed = groups if math.prod(len(axes[k].strings) for k in groups) <= FULL_PRODUCT // 4 else []
    first = {k: axes[k].strings[0] for k in keys}
    out: dict[tuple[str, ...], None] = {}
    for picks in itertools.product(*(axes[k].strings for k in crossed)):
        base = {**first, **dict(zip(crossed, picks))}
        out[tuple(base[k] for k in keys)] = None
        for k in keys:
            if k in crossed:
                continue
            for s in _values_to_compose(axes[k]):
                out[tuple(s if kk == k else base[kk] for kk in keys)] = None
        largest = {k: axes[k].strings[max(range(len(axes[k].numbers)), key=axes[k].numbers.__getitem__)]
                   for k in keys if axes[k].numbers is not None and k not in crossed}
        out[tuple(largest.get(k, base[k]) for k in keys)] = None
    return list(out)


def _values_to_compose(axis: Axis) -> list[str]:
    if axis.numbers is None or len(axis.strings) <= LONG_AXIS:
        return axis.strings
    lo = min(range(len(axis.numbers)), key=axis.numbers.__getitem__)
    hi = max(range(len(axis.numbers)), key=axis.numbers.__getitem__)
    return [axis.strings[0], axis.strings[lo], axis.strings[hi]]


def _check_against_table(axis: Axis) -> None:
    from .config import KNOBS

    rule = KNOBS.get(axis.key.lstrip("+~"))
    if rule is None:
        return
    for s, v in zip(axis.strings, axis.numbers):
        try:
            rule.check(axis.key.lstrip("+~"), v)
        except ConfigError as e:
            fail(str(e))


def _override_values(o) -> tuple[list[str], list | None]:
    """The values one parsed override stands for, as strings and (when all are numbers) as numbers:
    each of a choice/range/glob sweep; both ends of an interval (Optuna's search space)."""
    from hydra.core.override_parser.types import ValueType

    group = _paths.CONF_DIR / o.key_or_group.split("@")[0]
    if o.value_type == ValueType.GLOB_CHOICE_SWEEP:
        return o.value().filter(sorted(p.stem for p in group.glob("*.yaml"))), None
    if o.value_type == ValueType.INTERVAL_SWEEP:
        ends = [o.value().start, o.value().end]
        return [str(v) for v in ends], ends
    if o.is_sweep_override():
        values = list(o.sweep_iterator())
        strings = list(o.sweep_string_iterator())
        return strings, values if all(is_number(v) for v in values) else None
    value = o.value()
    return [o.get_value_element_as_str()], [value] if is_number(value) else None


def remedy_model(remedy: str) -> str | None:
    """The model a remedy preset (conf/remedy/NAME.yaml) selects with ``override /model: M``."""
    path = _paths.CONF_DIR / "remedy" / f"{remedy}.yaml"
    if not path.is_file():
        return None
    found = re.search(r"^\s*-\s*override\s+/model:\s*(\S+)", path.read_text(), flags=re.M)
    return found.group(1) if found else None


def _check_remedy_model(combo) -> None:
    """``remedy=lstm_chrono model=gru``: the command line's model would silently replace the one the
    remedy is for (a GRU with chrono, named lstm_chrono). Refused; the remedy's own model, or a model
    that the remedy does not name, are fine."""
    values = dict(c.split("=", 1) for c in combo if "=" in c and c.split("=", 1)[0] in ("remedy", "model"))
    remedy, model = values.get("remedy"), values.get("model")
    if remedy and model:
        wants = remedy_model(remedy)
        if wants is not None and wants != model:
            fail(f"model={model}: remedy={remedy} is a preset for model={wants}, not {model}; drop model= (the remedy "
                 f"sets it) or choose a remedy for {model} (conf/remedy/)")


def _axes(parsed) -> dict[str, Axis]:
    """key -> the 'key=value' strings to try; config-group values are checked against conf/GROUP/.

    Hydra's own groups (hydra/launcher=..., hydra/sweeper=...) are left to compose, which
    knows the plugins' options.
    """
    from .config import config_groups

    groups = set(config_groups())
    axes: dict[str, Axis] = {}
    for o in parsed:
        key = o.get_key_element()
        if o.is_delete():
            axes[key] = Axis(key, [o.input_line])
            continue
        try:
            strings, numbers = _override_values(o)
        except (ValueError, TypeError) as e:  # range(0, 10, 0): Python's own error, a traceback in Hydra
            fail(f"{o.input_line}: cannot be expanded ({_one_line(e)})")
        if not strings:  # range(5, 1), glob(zzz*): a sweep of nothing would run no job and say nothing
            fail(f"{o.input_line}: expands to no values; "
                 + ("no option of conf/" + o.key_or_group.split("@")[0] + "/ matches"
                    if o.value_type is not None and "GLOB" in str(o.value_type) else "an empty range"))
        group = o.key_or_group.split("@")[0]
        if group in groups:
            allowed = sorted(p.stem for p in (_paths.CONF_DIR / group).glob("*.yaml"))
            for v in strings:
                if v not in allowed:
                    fail(f"{group}={v}: unknown {group}{_did_you_mean(v, allowed)}; allowed: {', '.join(allowed)}")
        is_group = group in groups or "/" in group
        axes[key] = Axis(key, [f"{key}={v}" for v in strings], None if is_group else numbers, is_group)
    return axes


def _with_sweeper_params(compose, config_name: str, axes: dict[str, Axis], parsed) -> tuple[dict[str, Axis], str]:
    """Add the axes of ``hydra.sweeper.params`` (set by an experiment or hparams_search config);
    the command line wins over them, as it does in the sweep. Also returns the sweeper's class name."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    first = [a.strings[0] for a in axes.values()]
    try:
        cfg = compose(config_name=config_name, overrides=first, return_hydra_config=True)
    except Exception as e:
        fail(_sweeper_hint(_explain_missing_key(compose, config_name, first, e) or _hydra_message(_one_line(e))))
    sweeper = str(cfg.hydra.sweeper.get("_target_", "")).rpartition(".")[2]
    try:  # resolved: conf/protocol/lr_seeds.yaml computes its axes (seqlab.protocol), which may refuse a knob
        params = OmegaConf.to_container(cfg.hydra.sweeper.get("params") or OmegaConf.create({}), resolve=True)
    except Exception as e:  # noqa: BLE001 - an InterpolationResolutionError around the resolver's ValueError
        why = _one_line(e).split("ValueError raised while resolving interpolation: ", 1)
        fail(why[1] if len(why) == 2 else f"hydra.sweeper.params: {why[0]}")
    on_command_line = {k.lstrip("+~") for k in axes}
    extra = [f"{k}={v}" for k, v in params.items() if str(k).lstrip("+~") not in on_command_line]
    try:
        declared = OverridesParser.create().parse_overrides(extra)
    except Exception as e:
        fail(f"hydra.sweeper.params: {_one_line(e)}")
    parsed.extend(declared)
    return {**_axes(declared), **axes}, sweeper


def _check_intervals(parsed, sweeper: str) -> None:
    """interval(a, b) is a search space: only a searching sweeper (Optuna) takes one, with a < b
    (and a > 0 on a log scale)."""
    from hydra.core.override_parser.types import ValueType

    for o in parsed:
        if o.value_type != ValueType.INTERVAL_SWEEP:
            continue
        v = o.value()
        if sweeper == BASIC_SWEEPER:
            fail(f"{o.input_line}: the basic sweeper cannot search an interval; use hydra/sweeper=optuna "
                 f"(or +hparams_search=lr), or a list such as {o.get_key_element()}=0.001,0.01")
        if not v.start < v.end:
            fail(f"{o.input_line}: an interval needs start < end, e.g. interval({v.end}, {v.start})")
        if "log" in (v.tags or set()) and v.start <= 0:
            fail(f"{o.input_line}: a log-scale interval needs start > 0")


def _check_hydra(cfg: DictConfig, multirun: bool) -> tuple[int | None, str | None]:
    """Check the launcher's and sweeper's knobs against KNOBS and an Optuna storage; then drop the
    hydra node (the run config is validated without it). Returns the memory one job may use when
    the launcher says so (SLURM's mem_gb), else (None, None)."""
    from .config import HYDRA_NODES, check_knobs

    memory = (None, None)
    for key in ("hydra.run.dir", "hydra.sweep.dir"):  # an interpolation that cannot resolve (${oc.env:UNSET})
        try:
            value = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
        except Exception as e:  # noqa: BLE001 - omegaconf's InterpolationResolutionError and kin
            raw = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
            raw = OmegaConf.to_container(cfg.hydra, resolve=False)[key.split(".")[1]]["dir"] if raw is None else raw
            raise ConfigError(f"{key}={raw}: cannot be resolved ({_one_line(e)})") from None
        if key == "hydra.run.dir" and value is not None and not str(value).strip():
            raise ConfigError(f"{key}='': empty; it would write the run's files into the working directory")
    for path in HYDRA_NODES:
        node = OmegaConf.select(cfg, path)
        if node is None:
            continue
        try:
            tree = OmegaConf.to_container(node, resolve=True)
        except Exception:
            tree = OmegaConf.to_container(node, resolve=False)
        for skip in ("params", "search_space", "custom_search_space", "additional_parameters", "setup"):
            tree.pop(skip, None)
        check_knobs(tree, path + ".", declared_only=True)
        if path == "hydra.sweeper" and tree.get("storage") is not None:
            check_storage(tree["storage"])
        if path == "hydra.launcher" and "Slurm" in str(tree.get("_target_", "")):
            import shutil

            if multirun and shutil.which("srun") is None:  # submitit's own check, which ends in a traceback
                raise ConfigError("hydra/launcher=slurm: SLURM is not available on this machine (no srun on PATH); "
                                  "submit from the cluster's login node, or try the sweep here with "
                                  "hydra/launcher=submitit_local")
            if tree.get("mem_gb"):
                memory = (tree["mem_gb"] * 2**30, "a job's memory (hydra.launcher.mem_gb)")
    with open_dict(cfg):
        del cfg["hydra"]
    return memory


def check_storage(url) -> None:
    """An Optuna storage the sweep can open: a known database URL whose driver is installed and, for
    sqlite, whose file can be written. Nothing is created here."""
    import importlib

    key = "hydra.sweeper.storage"
    if not isinstance(url, str):
        raise ConfigError(f"{key}={url!r}: must be a database URL such as sqlite:///optuna.db, or null")
    if url.startswith("redis"):
        if importlib.util.find_spec("redis") is None:
            raise ConfigError(f"{key}={url!r}: a redis storage needs the redis package (pip install redis)")
        return
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        dialect = parsed.get_dialect()
        getattr(dialect, "import_dbapi", None) and dialect.import_dbapi() or dialect.dbapi()
    except Exception as e:
        raise ConfigError(f"{key}={url!r}: not a database URL Optuna can open ({_one_line(e)}); "
                          "e.g. sqlite:///optuna.db") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser()
        parent = path.parent if str(path.parent) else Path(".")
        import os

        if path.exists() and not path.is_file():
            raise ConfigError(f"{key}={url!r}: {path} is not a file")
        if not (parent.is_dir() and os.access(parent, os.W_OK)) and not (path.is_file() and os.access(path, os.W_OK)):
            raise ConfigError(f"{key}={url!r}: cannot write {path} (is {parent} an existing, writable directory?)")


def _sweeper_hint(message: str) -> str:
    if "hydra/sweeper/optuna" in message or "hydra/sweeper/sampler" in message:
        return "hydra/sweeper=optuna is not installed: pip install -c constraints.txt -e '.[sweep]'"
    return message


def _explain_missing_key(compose, config_name: str, combo, err: Exception) -> str | None:
    """'Could not override X' -> name X and list the options that do exist where it was looked for."""
    missing = re.match(r"Could not override '([^']+)'", str(err))
    if not missing:
        return None
    key = missing[1]
    parent = key.rpartition(".")[0]
    try:
        base = compose(config_name=config_name, overrides=[o for o in combo if o.split("=")[0] != key])
    except Exception:
        return None
    node = OmegaConf.select(base, parent) if parent else base
    if not isinstance(node, DictConfig):
        return None
    names = [str(k) for k in node.keys() if not str(k).startswith("_") and k != "hydra"]
    where = f" of {parent}" if parent else ""
    return f"{key}: not an option{where}{_did_you_mean(key.rpartition('.')[2], names)}; options are: {', '.join(names)}"


def _did_you_mean(word: str, options) -> str:
    """' (did you mean steps?)' for a near miss among ``options`` (case-insensitive), else ''."""
    import difflib

    lower = {str(o).lower(): str(o) for o in options}
    near = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.6)
    return f" (did you mean {lower[near[0]]}?)" if near else ""


def _hydra_message(message: str) -> str:
    """Hydra's one-line messages, cut to what a user acts on: a near miss among the options it lists, no
    config search path; an override without '=' named as such."""
    message = re.sub(r"\s*Config search path:.*$", "", message)
    missing = re.search(r"Could not find '([^']+)/([^'/]+)'.*?Available options in '[^']+':\s*(.*)$", message)
    if missing:
        group, value, options = missing[1], missing[2], missing[3].split()
        return f"{group}={value}: unknown {group}{_did_you_mean(value, options)}; allowed: {', '.join(options)}"
    bad = re.match(r"Error parsing override '([^']*)'", message)
    if bad and "=" not in bad[1]:
        return (f"{bad[1]}: not an override; every argument is KEY=VALUE (e.g. seq_len=100)"
                + (" or, for python -m seqlab.probe, checkpoint=PATH" if bad[1].startswith(("/", ".", "~")) else ""))
    return message
