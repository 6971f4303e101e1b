"""Training progress on stderr: a tqdm bar on a terminal, a plain line now and then into a file.

A bar redrawn with carriage returns is for eyes on a terminal; written into a log (a sweep's job
output, ``nohup``, SLURM) it becomes hundreds of KB of one line. Off a terminal, progress is one
newline-terminated line every ``FILE_INTERVAL_S`` seconds instead.
"""
from __future__ import annotations

import sys
import time

FILE_INTERVAL_S = 60.0


class Progress:
    """``update(step, loss=...)`` once per step; ``close()`` at the end."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.desc, self.bar = total, desc, None
        self.enabled = enabled and initial < total
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.loss: float | None = None
        self.start, self.start_step = time.perf_counter(), initial
        self.next_line = self.start + FILE_INTERVAL_S
        if self.enabled and self.tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, file=self.stream)

    def update(self, step: int, loss: float | None = None) -> None:
        if not self.enabled:
            return
        if loss is not None:
            self.loss = loss
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        if self.bar is not None:
            self.bar.update(1)
            return
        now = time.perf_counter()
        if now >= self.next_line:
            self.next_line = now + FILE_INTERVAL_S
            rate = (step - self.start_step) / (now - self.start)
            loss_text = f", train loss {self.loss:.4g}" if self.loss is not None else ""
            print(f"{self.desc}: step {step}/{self.total} ({100 * step / self.total:.0f}%), "
                  f"{rate:.1f} steps/s{loss_text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
