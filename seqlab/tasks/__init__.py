"""Synthetic long-term-dependency tasks: one file each, a pure batch generator plus metadata."""
from . import adding, copy, delayed_recall
from .adding import Adding
from .base import Batch, Task
from .copy import Copy
from .delayed_recall import DelayedRecall

__all__ = ["adding", "copy", "delayed_recall", "Adding", "Batch", "Copy", "DelayedRecall", "Task"]
