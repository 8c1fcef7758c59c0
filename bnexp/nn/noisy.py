"""Noisy BatchNorm (Santurkar et al. 2018, sec. 2.1): BN whose output is made deliberately unstable.

In training mode, after normalizing, every activation is scaled and shifted by its own noise,
y -> y * a + b with a ~ N(mu_a, sd_a), b ~ N(mu_b, sd_b), and the per-channel moments (mu_a, sd_a, mu_b, sd_b)
are themselves drawn anew at every step, uniformly from configured ranges. The draws use torch's seeded
generator, which every checkpoint saves, so a noisy run is as reproducible and resumable as any other.
In eval mode it is plain BN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bnexp.nn.batchnorm import BatchNorm, _channel_shape

Range = tuple[float, float]


class NoisyBatchNorm(BatchNorm):
    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        mult_mean: Range = (0.5, 1.5),
        mult_std: Range = (0.0, 0.5),
        add_mean: Range = (-0.5, 0.5),
        add_std: Range = (0.0, 0.5),
    ):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine)
        self.ranges = torch.tensor([mult_mean, mult_std, add_mean, add_std])  # (4, 2): low, high

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, noise ranges={self.ranges.tolist()}"

    def forward(self, x: Tensor) -> Tensor:
        y = super().forward(x)
        if not self.training:
            return y
        with torch.no_grad():
            low, high = self.ranges.to(y.device, torch.float32).unbind(1)
            u = torch.rand(4, self.num_features, device=y.device)
            moments = low[:, None] + (high - low)[:, None] * u  # (4, C): this step's mu_a, sd_a, mu_b, sd_b
            shape = _channel_shape(y)
            a = torch.randn_like(y).mul_(moments[1].view(shape)).add_(moments[0].view(shape))
            b = torch.randn_like(y).mul_(moments[3].view(shape)).add_(moments[2].view(shape))
        return torch.addcmul(b, y, a)
