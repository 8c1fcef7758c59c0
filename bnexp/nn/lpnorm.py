"""ℓp Batch Normalization (Santurkar et al. 2018, sec. 4): BN's per-channel batch centring, but the centred
activations are divided by their average ℓp norm instead of the standard deviation,

    s_p = (mean over the batch of |x - mu_B|^p)^(1/p),     s_inf = max over the batch of |x - mu_B|,
    y = gamma * (x - mu_B) / sqrt(s_p^2 + eps) + beta.

p = 1 is the mean absolute deviation, p = 2 the (biased) standard deviation, so ``LpBatchNorm(p=2)`` is
bnexp's BatchNorm in every mode. The paper's appendix gives the scaling it used; the copies available to this
project hold only the paper's first pages, so no further rescaling is applied: gamma (initialised to 1) is
free to learn one. For Gaussian inputs ℓ1 outputs start with sd ≈ 1.25 and ℓ∞ outputs with sd ≈ 1 / (the
batch's largest |z|), a few times smaller than BN's.

Conventions as bnexp's BatchNorm, except the running estimate: ``running_var`` holds the running average of
s_p^2 (so state dicts keep torch's names and eval mode is BatchNorm's), with the m / (m - 1) correction for
p = 2 only, where it makes the square unbiased; ℓ1 and ℓ∞ have no such factor. The gradient is autograd's
through mu_B and s_p (for ℓ∞ it reaches only each channel's largest deviation). Not synchronized across
processes (the config refuses ``bn_sync: sync`` for these norms).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bnexp.nn.batchnorm import BatchNorm, _channel_shape


class LpBatchNorm(BatchNorm):
    def __init__(
        self,
        num_features: int,
        p: float,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
    ):
        if p not in (1, 2, math.inf):
            raise ValueError(f"LpBatchNorm: p must be 1, 2 or inf, got {p!r}")
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine)
        self.p = float(p)

    @property
    def running_var_is_variance(self) -> bool:  # type: ignore[override]
        return self.p == 2

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"

    def _batch_normalize(self, x: Tensor, dims: list[int]) -> tuple[Tensor, Tensor, Tensor, int]:
        if self.process_group is not None:
            raise ValueError("LpBatchNorm is not synchronized across processes; use bn_sync: local")
        m = x.numel() // x.shape[1]
        if m < 2:
            raise ValueError(f"LpBatchNorm needs more than 1 value per channel, got input {tuple(x.shape)}")
        shape = _channel_shape(x)
        mu = x.mean(dims, keepdim=True)
        centred = x - mu
        deviation = centred.abs()
        if self.p == math.inf:
            square = deviation.amax(dims).square()
        elif self.p == 2:
            square = deviation.square().mean(dims)
        else:
            square = deviation.mean(dims).square()
        y = centred * torch.rsqrt(square + self.eps).view(shape)
        if self.affine:
            y = torch.addcmul(self.bias.view(shape), y, self.weight.view(shape))
        return y, mu.detach().flatten(), square.detach(), m

    def _running_var_sample(self, square: Tensor, m: int) -> Tensor:
        # the m / (m - 1) factor unbiases a variance (p = 2); ℓ1 and ℓ∞ have no such factor
        return super()._running_var_sample(square, m) if self.p == 2 else square
