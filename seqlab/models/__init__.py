"""Recurrent and feedforward models: one file per layer family, one sequence-model wrapper."""
from .base import RecurrentLayer
from .bnlstm import BNLSTMLayer
from .cornn import CoRNNLayer
from .feedforward import FeedforwardLayer
from .gru import GRULayer
from .indrnn import IndRNNLayer
from .lru import LRULayer
from .lstm import LSTMLayer
from .mingru import MinGRULayer
from .minlstm import MinLSTMLayer
from .orthogonal import OrthogonalRNNLayer
from .rnn import RNNLayer
from .selective import SelectiveLayer
from .sequence import SequenceModel

__all__ = ["BNLSTMLayer", "CoRNNLayer", "FeedforwardLayer", "GRULayer", "IndRNNLayer", "LRULayer", "LSTMLayer", "MinGRULayer",
           "MinLSTMLayer", "OrthogonalRNNLayer", "RNNLayer", "RecurrentLayer", "SelectiveLayer", "SequenceModel"]
