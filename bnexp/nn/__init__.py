"""Normalization layers: bnexp's own BatchNorm, the naive reference, and the factory models use."""

from bnexp.nn.batchnorm import BatchNorm, NaiveBatchNorm, convert_momentum
from bnexp.nn.norms import NormFactory, norm_factory

__all__ = ["BatchNorm", "NaiveBatchNorm", "NormFactory", "convert_momentum", "norm_factory"]
