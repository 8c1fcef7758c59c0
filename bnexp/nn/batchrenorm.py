"""Batch Renormalization (Ioffe 2017): BatchNorm whose training output is corrected towards the running
statistics, so that training and inference agree even for small or non-i.i.d. batches.

    x_hat = (x - mu_B) / sigma_B * r + d,   r = clip(sigma_B / sigma, 1/r_max, r_max),
                                            d = clip((mu_B - mu) / sigma, -d_max, d_max)

with mu, sigma the running statistics (sigma = sqrt(running_var + eps)) and r, d treated as constants in
backprop. Since y = gamma * x_hat + beta = (gamma * r) * BN(x) + (gamma * d + beta), it is bnexp's BatchNorm
with weight gamma * r and bias gamma * d + beta: the same autograd Function, the same conventions, the same
state-dict names (r_max = 1, d_max = 0 is plain BatchNorm). The clipping limits ramp linearly from (1, 0) to
(r_max, d_max) over `ramp` = [start, end], counted in training batches (`num_batches_tracked`, so a resumed
run continues the ramp).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bnexp.nn.batchnorm import BatchNorm, _BatchNormTrain


class BatchRenorm(BatchNorm):
    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        r_max: float = 3.0,
        d_max: float = 5.0,
        ramp: tuple[int, int] = (0, 0),
    ):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine, track_running_stats=True)
        self.r_max, self.d_max, self.ramp = r_max, d_max, tuple(ramp)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r_max={self.r_max}, d_max={self.d_max}, ramp={self.ramp}"

    def limits(self) -> tuple[float, float]:
        """(r_max, d_max) at the current training batch."""
        start, end = self.ramp
        t = int(self.num_batches_tracked)
        frac = 1.0 if t >= end else 0.0 if t < start or end == start else (t - start) / (end - start)
        return 1.0 + (self.r_max - 1.0) * frac, self.d_max * frac

    def _batch_normalize(self, x: Tensor, dims: list[int]) -> tuple[Tensor, Tensor, Tensor, int]:
        mean, var, m = self._batch_stats(x, dims)
        inv_std = torch.rsqrt(var + self.eps)
        with torch.no_grad():
            r_max, d_max = self.limits()
            sigma = torch.sqrt(self.running_var + self.eps)
            r = (torch.sqrt(var + self.eps) / sigma).clamp_(1.0 / r_max, r_max)
            d = ((mean - self.running_mean) / sigma).clamp_(-d_max, d_max)
        weight = r if self.weight is None else self.weight * r
        bias = d if self.bias is None else (d if self.weight is None else self.weight * d) + self.bias
        y = _BatchNormTrain.apply(x, weight, bias, mean, inv_std, m, self.process_group)
        return y, mean, var, m
