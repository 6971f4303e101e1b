"""The command line of ``python -m seqlab`` (and ``python -m seqlab.probe``), read in one place before
Hydra runs: Hydra's own parser, with argparse's usage text and Hydra's tracebacks turned into one
line (``fail``). ``preflight`` (the values) and ``rundir`` (the directories) both read it from here.
"""
from __future__ import annotations

import sys


def fail(message: str) -> None:
    """``seqlab: error: MESSAGE`` on stderr, exit 2."""
    print(f"seqlab: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_args(argv: list[str]):
    """Hydra's parse of ``argv`` (flags and overrides); a bad flag, or ``--experimental-rerun`` (it
    unpickles a file), is one line and exit 2."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    # argparse's usage text and 'error:' line -> one line
    parser.error = lambda message: fail(f"{message}: not a valid command line (python -m seqlab --help)")
    args = parser.parse_known_args(argv)[0]
    if getattr(args, "experimental_rerun", None) is not None:  # Hydra's feature: it unpickles FILE (runs its code)
        fail(f"--experimental-rerun {args.experimental_rerun}: refused; it unpickles that file, and a pickle can run "
             f"any code. Rerun a run with its own command line (its .hydra/overrides.yaml), or continue it with "
             f"resume=RUN_DIR")
    return args


def overrides_from_argv(argv: list[str]) -> list[str] | None:
    """The override strings of a command line, or None when Hydra will not run a job."""
    args = parse_args(argv)
    modes = [flag for flag, on in (("--run", args.run), ("--multirun", args.multirun), ("--cfg", args.cfg is not None),
                                   ("--info", args.info is not None), ("--shell-completion", args.shell_completion)) if on]
    if len(modes) > 1 and not (args.help or args.hydra_help):  # Hydra raises a ValueError with a traceback
        fail(f"{' and '.join(modes)}: only one of --run, --multirun (-m), --cfg, --info and --shell-completion "
             f"can be given")
    if args.help or args.hydra_help or args.shell_completion or args.info or args.cfg:
        return None
    return list(args.overrides)


def override_value(overrides: list[str], key: str) -> str | None:
    """The value ``key=VALUE`` (or ``+key=VALUE``) gives, the last one when given twice; None if absent."""
    found = None
    for o in overrides:
        k, sep, v = o.partition("=")
        if sep and k.lstrip("+") == key:
            found = v
    return found


def is_multirun(argv: list[str]) -> bool:
    """A sweep: ``-m``/``--multirun``, or ``hydra.mode=MULTIRUN`` among the overrides."""
    args = parse_args(argv)
    return bool(args.multirun) or str(override_value(list(args.overrides), "hydra.mode")).upper() == "MULTIRUN"
