"""The command line: ``python -m seqlab.report DIR [DIR ...] [-o OUT] [--curve c_l0] [--title T]``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import seqlab.report as _package
from seqlab.checks import ConfigError
from seqlab.report.runs import DEFAULT_CURVE, group_runs, load_runs
from seqlab.report.stats import curves_in, setting_row
from seqlab.report.tables import short_table
from seqlab.report.write import write_report


TITLE_MAX = 200


def load_or_say(dirs: list[str], prog: str) -> list | None:
    """The runs under ``dirs``, or None after one line on stderr (a missing folder, no run in them)."""
    try:
        runs = load_runs(dirs)
    except (FileNotFoundError, ConfigError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return None
    if not runs:
        print(f"{prog}: error: no run directories under {' '.join(dirs)}", file=sys.stderr)
        return None
    return runs


def write_or_say(write, out: Path, prog: str):
    """``write()``'s result, or None after one line on stderr when ``out`` cannot be written."""
    try:
        return write()
    except OSError as e:  # -o is a file, read-only, under /proc, a full disk
        print(f"{prog}: error: -o {out}: cannot write there ({e.strerror or type(e).__name__}); "
              f"choose a writable folder", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seqlab.report", description=_package.__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", help="sweep directories (multirun/DATE/TIME) or run directories")
    parser.add_argument("-o", "--out", help="output folder (default: DIR/report for one DIR, else ./report)")
    parser.add_argument("--curve", default=DEFAULT_CURVE,
                        help=f"probe curve for the numbers and decay figure (default {DEFAULT_CURVE}, or a model's first "
                             "curve when it has none; e.g. c_l0: settings without it are left out, and said so)")
    parser.add_argument("--title", default="", help="title of the report and figures")
    parser.add_argument("--by", default=None,
                        help="verdicts over learning rates x seeds grouped by these comma-separated keys (e.g. "
                             "cell,task,seq_len; default: every key of a setting); the section appears on its own "
                             "when the runs hold more than one learning rate")
    parser.add_argument("--wandb", action="store_true",
                        help="also log the verdict tables as a W&B Table in an offline run under OUT/wandb")
    args = parser.parse_args(argv)
    if len(args.title) > TITLE_MAX or "\n" in args.title:  # it heads every figure: checked before anything is written
        print(f"seqlab.report: error: --title: {len(args.title)} characters{' with a line break' if chr(10) in args.title else ''}; "
              f"a title is one line of at most {TITLE_MAX} characters", file=sys.stderr)
        return 2
    runs = load_or_say(args.dirs, "seqlab.report")
    if runs is None:
        return 2
    curves = curves_in(runs)
    if curves and args.curve != DEFAULT_CURVE and args.curve not in curves:
        print(f"seqlab.report: error: --curve {args.curve}: no run has this probe curve; "
              f"curves in these runs: {', '.join(curves)}", file=sys.stderr)
        return 2
    by = [k.strip() for k in args.by.split(",") if k.strip()] if args.by else None
    if by is not None:
        from seqlab.report.verdicts import check_keys, records_of

        try:
            check_keys(records_of(runs), by)
        except ValueError as e:
            print(f"seqlab.report: error: {e}", file=sys.stderr)
            return 2
    out = Path(args.out) if args.out else (Path(args.dirs[0]) / "report" if len(args.dirs) == 1 else Path("report"))
    root = Path(args.dirs[0]).resolve() if len(args.dirs) == 1 else None
    written = write_or_say(lambda: write_report(runs, out, curve=args.curve, title=args.title, root=root, by=by),
                           out, "seqlab.report")
    if written is None:
        return 2
    # the terminal gets a glance (the full tables and notes are in the files)
    rows = [setting_row(s, args.curve) for s in group_runs(runs)]
    n_bad = sum(not r.finished for r in runs)
    print(f"{len(runs)} runs in {len(rows)} settings, {len(runs) - n_bad} finished")
    print(short_table(rows, args.curve))
    if args.wandb:
        from seqlab.report.verdicts import aggregate, default_keys, log_wandb_table, records_of

        records = records_of(runs)
        keys = by or default_keys(records)
        run_id = log_wandb_table(aggregate(records, keys), keys, out, args.title)
        print(f"W&B table 'verdicts' in {out / 'wandb'} (run {run_id}; upload: wandb sync {out / 'wandb'}/offline-run-*)"
              if run_id else "W&B could not start: the tables are in report.md/html/json")
    print(f"report: {written['html']} (also {', '.join(p.name for k, p in written.items() if k != 'html')})")
    return 0

