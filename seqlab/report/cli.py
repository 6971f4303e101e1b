"""The command line: ``python -m seqlab.report DIR [DIR ...] [-o OUT] [--curve c_l0] [--title T]``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import seqlab.report as _package
from seqlab.report.runs import DEFAULT_CURVE, load_runs
from seqlab.report.write import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seqlab.report", description=_package.__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", help="sweep directories (multirun/DATE/TIME) or run directories")
    parser.add_argument("-o", "--out", help="output folder (default: DIR/report for one DIR, else ./report)")
    parser.add_argument("--curve", default=DEFAULT_CURVE,
                        help=f"probe curve for the numbers and decay figure (default {DEFAULT_CURVE}; e.g. c_l0)")
    parser.add_argument("--title", default="", help="title of the report and figures")
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.dirs)
    except FileNotFoundError as e:
        print(f"seqlab.report: error: {e}", file=sys.stderr)
        return 2
    if not runs:
        print(f"seqlab.report: error: no run directories under {' '.join(args.dirs)}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else (Path(args.dirs[0]) / "report" if len(args.dirs) == 1 else Path("report"))
    root = Path(args.dirs[0]).resolve() if len(args.dirs) == 1 else None
    written = write_report(runs, out, curve=args.curve, title=args.title, root=root)
    print(written["markdown"].read_text().split("## Runs")[0].strip())
    print(f"\nreport: {written['html']} ({', '.join(p.name for k, p in written.items() if k != 'html')})")
    return 0

