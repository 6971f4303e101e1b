"""Compare runs from their run directories alone (no W&B, no network).

    python -m seqlab.report multirun/2026-11-22/21-50-00            # a sweep
    python -m seqlab.report outputs/2026-11-22/10-00-00 outputs/...  # any run dirs
    python -m seqlab.report multirun/A multirun/B -o report/       # several sweeps together

Reads what every run writes (``config.yaml``, ``metrics.jsonl``, ``summary.json``,
``.hydra/overrides.yaml``, and the probe's ``probe.npz`` when it ran) and writes
into ``OUT`` (default: ``DIR/report`` for one directory, else ``./report``):

  report.md, report.html   a table per *setting* (the runs that differ only in
                           ``seed``): final loss vs the task baseline, runs solved
                           and the step, the gradient's half-life, horizon and gain,
                           the top Lyapunov exponent, as mean +- sample std over
                           seeds; then every run with its status and error
  report.json              the same numbers, machine-readable
  decay_curves.png         the probe's g(k)/g(0) against the lag k, one panel per
                           seq_len, one colour per setting; dotted at step 0,
                           solid at the end (geometric mean over seeds); dashed:
                           the mean-field prediction at init (seqlab.theory), to
                           the float32 floor, where the runs have one
  learning_curves.png      eval loss against step with the task baseline, and the
                           pre-clip gradient norm (mean over finished seeds;
                           failed/unfinished runs dotted, ending in an x)
  probe_vs_seq_len.png     half-life, horizon, gain and top Lyapunov exponent
                           against seq_len per setting (against the setting when
                           only one seq_len was run)
  depth_curves.png         models with more than one layer: the probe's g(l)/g(last)
                           at lag 0 and ||dL/dtheta_l|| against the layer l
  layer_speed.png          "early layers barely update": each layer's update ratio
                           ||dW_l||/||W_l|| and gradient norm against the step
                           (seqlab.report.layers)
  trainability.png         does the step-0 probe predict which runs solve? each
                           statistic against the outcome (seqlab.report.trainability;
                           its numbers are a section of report.md/html/json)

A run directory without ``summary.json`` is *unfinished* (still running, or
killed); ``summary.json`` says ``finished``, ``failed`` or ``diverged``. Only
finished runs enter the end-of-training statistics; every run is listed with its
status, and the probe at step 0 counts for every run that got that far.

Modules, by what a reader looks for: ``runs`` (loading run directories, grouping them into settings),
``stats`` (the numbers of a setting), ``tables`` (markdown/HTML/JSON rows), ``figures``, ``write``
(the report folder) and ``cli`` (``python -m seqlab.report``).
"""
from seqlab.report.runs import (DEFAULT_CURVE, FINISHED, UNFINISHED, Run, Setting, find_run_dirs,
                                group_runs, load_run, load_runs, setting_of)
from seqlab.report.stats import curve_key, mean_std, probe_numbers, setting_row
from seqlab.report.tables import COLUMNS, RUN_HEADER, fmt, run_cells, table_cells, table_header
from seqlab.report.figures import plot_decay_curves, plot_learning_curves, plot_probe_vs_seq_len
from seqlab.report.write import write_report
from seqlab.report.cli import main

__all__ = ["DEFAULT_CURVE", "FINISHED", "UNFINISHED", "Run", "Setting", "find_run_dirs", "group_runs", "load_run",
           "load_runs", "setting_of", "curve_key", "mean_std", "probe_numbers", "setting_row", "COLUMNS",
           "RUN_HEADER", "fmt", "run_cells", "table_cells", "table_header", "plot_decay_curves",
           "plot_learning_curves", "plot_probe_vs_seq_len", "write_report", "main"]
