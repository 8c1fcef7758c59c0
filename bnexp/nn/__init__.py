"""Normalization layers: bnexp's own BatchNorm (local or synchronized), Batch Renorm, noisy BN, the naive
reference, ℓ1/ℓ∞ BN, ZCA whitening (decorrelated BN), and the factory that gives every model its layers from
the config."""

from bnexp.nn.batchnorm import BatchNorm, NaiveBatchNorm, convert_momentum
from bnexp.nn.batchrenorm import BatchRenorm
from bnexp.nn.lpnorm import LpBatchNorm
from bnexp.nn.noisy import NoisyBatchNorm
from bnexp.nn.norms import NormFactory, norm_factory
from bnexp.nn.whitening import DecorrelatedBatchNorm

__all__ = [
    "BatchNorm",
    "BatchRenorm",
    "DecorrelatedBatchNorm",
    "LpBatchNorm",
    "NaiveBatchNorm",
    "NoisyBatchNorm",
    "NormFactory",
    "convert_momentum",
    "norm_factory",
]
