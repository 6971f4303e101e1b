"""Recurrent models: one file per cell family, one sequence-model wrapper."""
from .base import RecurrentLayer
from .gru import GRULayer
from .indrnn import IndRNNLayer
from .lru import LRULayer
from .lstm import LSTMLayer
from .orthogonal import OrthogonalRNNLayer
from .rnn import RNNLayer
from .sequence import SequenceModel

__all__ = ["GRULayer", "IndRNNLayer", "LRULayer", "LSTMLayer", "OrthogonalRNNLayer", "RNNLayer",
           "RecurrentLayer", "SequenceModel"]
