"""seqlab: a lab for long-term dependencies in recurrent networks."""
__version__ = "0.1.0"
