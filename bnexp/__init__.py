"""bnexp: reproduce, measure and go beyond the classic Batch Normalization experiments."""

__version__ = "0.1.0"
