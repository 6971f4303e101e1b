"""Read an offline W&B run back (with wandb's own `wandb leet inspect --json`)."""
import json
import subprocess
import sys
from pathlib import Path


def wandb_records(run_dir: Path) -> list[dict]:
    """All records of an offline run directory (wandb/offline-run-*), in order."""
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def wandb_exit_code(run_dir: Path):
    """The run's exit code, or None if the run was never finished."""
    codes = [r["exit"].get("exit_code", 0) for r in wandb_records(run_dir) if r["type"] == "exit"]
    return codes[-1] if codes else None


def wandb_summary(records: list[dict]) -> dict:
    """The run's final W&B summary (its summary updates in order), without W&B's own _keys."""
    summary: dict = {}
    for r in records:
        if r["type"] == "summary":
            summary.update(r["summary"].get("update", {}))
            for key in r["summary"].get("remove", []) or []:
                summary.pop(key, None)
    return {k: v for k, v in summary.items() if not k.startswith("_")}


def wandb_config(records: list[dict]) -> dict:
    """The run's W&B config as the run record gives it, without W&B's own _wandb."""
    (run,) = [r["run"] for r in records if r["type"] == "run"]
    return {k: v for k, v in run["config"]["update"].items() if k != "_wandb"}
