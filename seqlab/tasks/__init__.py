"""Tasks: one file each, a pure batch generator plus metadata (synthetic long-term dependencies,
and tasks without time for feedforward depth: random labels, 8x8 digits)."""
from . import (adding, copy, delayed_recall, digits, flip_flop, lag_copy, mqar, parity, random_labels, selective_copy,
               temporal_order)
from .adding import Adding
from .base import Batch, Task
from .copy import Copy
from .delayed_recall import DelayedRecall
from .digits import Digits
from .flip_flop import FlipFlop
from .lag_copy import LagCopy
from .mqar import MQAR
from .parity import Parity
from .random_labels import RandomLabels
from .selective_copy import SelectiveCopy
from .temporal_order import TemporalOrder

__all__ = ["adding", "copy", "delayed_recall", "digits", "flip_flop", "lag_copy", "mqar", "parity", "random_labels",
           "selective_copy", "temporal_order", "Adding", "Batch", "Copy", "DelayedRecall", "Digits", "FlipFlop",
           "LagCopy", "MQAR", "Parity", "RandomLabels", "SelectiveCopy", "Task", "TemporalOrder"]
