"""Test-wide settings.

One intra-op thread for the in-process tests: the models here are tiny, and on a
loaded 2-core machine OpenMP's worker threads make a tiny model 10-20x slower.
W&B stays offline and quiet whatever the caller's environment says.
"""
import os

import pytest
import torch

os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
