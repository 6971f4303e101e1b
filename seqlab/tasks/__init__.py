"""Synthetic long-term-dependency tasks: one file each, a pure batch generator plus metadata."""
from . import adding, copy, delayed_recall, flip_flop, lag_copy, mqar, parity, selective_copy, temporal_order
from .adding import Adding
from .base import Batch, Task
from .copy import Copy
from .delayed_recall import DelayedRecall
from .flip_flop import FlipFlop
from .lag_copy import LagCopy
from .mqar import MQAR
from .parity import Parity
from .selective_copy import SelectiveCopy
from .temporal_order import TemporalOrder

__all__ = ["adding", "copy", "delayed_recall", "flip_flop", "lag_copy", "mqar", "parity", "selective_copy",
           "temporal_order", "Adding", "Batch", "Copy", "DelayedRecall", "FlipFlop", "LagCopy", "MQAR", "Parity",
           "SelectiveCopy", "Task", "TemporalOrder"]
