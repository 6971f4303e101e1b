"""Synthetic long-term-dependency tasks: one file each, a pure batch generator plus metadata."""
from .adding import Adding
from .base import Batch, Task
from .copy import Copy
from .delayed_recall import DelayedRecall

__all__ = ["Adding", "Batch", "Copy", "DelayedRecall", "Task"]
