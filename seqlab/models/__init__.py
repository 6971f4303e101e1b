"""Recurrent models: one file per cell family, one sequence-model wrapper."""
from .base import RecurrentLayer
from .gru import GRULayer
from .lstm import LSTMLayer
from .rnn import RNNLayer
from .sequence import SequenceModel

__all__ = ["GRULayer", "LSTMLayer", "RNNLayer", "RecurrentLayer", "SequenceModel"]
