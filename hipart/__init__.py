"""HiPART: hierarchical pose autoregressive transformer (model, skeleton, data, training, evaluation)."""

__version__ = "0.1.0"
