"""Decorrelated Batch Normalization (Huang et al. 2018): ZCA whitening of each group of channels.

For a group of g channels, with X the centred batch (g x m values; m = N x spatial size),

    Sigma = X X^T / m + eps I,   W = Sigma^(-1/2) = D diag(lambda^(-1/2)) D^T   (Sigma = D diag(lambda) D^T),
    y = gamma * (W X) + beta     (gamma, beta per channel).

The output's covariance over the batch is the identity up to eps (BN makes only its diagonal 1). Channels are
split into groups of `group_size` in order; the last group holds the remainder. The running mean and the
running covariance per group (unbiased, m / (m - 1), as BatchNorm's running variance) are averaged with torch's
momentum convention; eval mode whitens with Sigma = running covariance + eps I.

The inverse square root's gradient is computed in closed form (Daleckii–Krein): for a symmetric perturbation,
dW = D (K o (D^T dSigma D)) D^T with K_ij = (lambda_i^-1/2 - lambda_j^-1/2) / (lambda_i - lambda_j)
= -1 / (s_i s_j (s_i + s_j)), s = sqrt(lambda). Unlike autograd through eigh, which divides by lambda_i - lambda_j,
it has no singularity at repeated eigenvalues. The eigendecomposition runs in float64 (g <= a few dozen).

Cost: one g x g eigendecomposition per group per training step, O(g^3), and a g x g x m product; BN's
per-channel statistics are O(m). Not synchronized across processes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bnexp.nn.batchnorm import _channel_shape, register_affine


class _InverseSqrt(torch.autograd.Function):
    """W = S^(-1/2) of a batch of symmetric positive-definite matrices S (..., g, g)."""

    @staticmethod
    def forward(ctx, s: Tensor) -> Tensor:
        lam, d = torch.linalg.eigh(s.double())
        root = lam.clamp_min(torch.finfo(torch.float64).tiny).sqrt()
        w = (d / root.unsqueeze(-2)) @ d.transpose(-1, -2)
        ctx.save_for_backward(d, root)
        return w.to(s.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        d, root = ctx.saved_tensors
        g = d.transpose(-1, -2) @ grad.double() @ d
        g = (g + g.transpose(-1, -2)) / 2
        ri, rj = root.unsqueeze(-1), root.unsqueeze(-2)
        k = -1.0 / (ri * rj * (ri + rj))
        return (d @ (k * g) @ d.transpose(-1, -2)).to(grad.dtype)


def inverse_sqrt(s: Tensor) -> Tensor:
    return _InverseSqrt.apply(s)


class DecorrelatedBatchNorm(nn.Module):
    """ZCA whitening per group of channels over the channel axis (dim 1) of inputs (N, C) or (N, C, *spatial)."""

    def __init__(
        self,
        num_features: int,
        group_size: int = 16,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
    ):
        super().__init__()
        if group_size < 1:
            raise ValueError(f"DecorrelatedBatchNorm: group_size must be >= 1, got {group_size}")
        self.num_features, self.eps, self.momentum, self.affine = num_features, eps, momentum, affine
        self.group_size = min(group_size, num_features)
        full, rest = divmod(num_features, self.group_size)
        self.sizes = [self.group_size] * full + ([rest] if rest else [])
        register_affine(self, num_features, affine)
        self.register_buffer("running_mean", torch.zeros(num_features))
        # full groups stacked (full, g, g); the remainder group (rest, rest), empty when there is none
        self.register_buffer("running_cov", torch.eye(self.group_size).repeat(full, 1, 1))
        self.register_buffer("running_cov_rest", torch.eye(rest))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def reset_running_stats(self) -> None:
        """Mean 0, identity covariance, no batch seen."""
        with torch.no_grad():
            self.running_mean.zero_()
            self.running_cov.copy_(torch.eye(self.group_size).expand_as(self.running_cov))
            self.running_cov_rest.copy_(torch.eye(self.running_cov_rest.shape[0]))
            self.num_batches_tracked.zero_()

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, group_size={self.group_size}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}"
        )

    def _groups(self, values: Tensor) -> list[Tensor]:
        """(C, m) -> the full groups stacked (full, g, m) and the remainder (1, rest, m), those that exist."""
        full = len(self.sizes) - (1 if self.num_features % self.group_size else 0)
        cut = full * self.group_size
        parts = [values[:cut].reshape(full, self.group_size, -1)] if full else []
        return parts + ([values[cut:].unsqueeze(0)] if cut < self.num_features else [])

    def _running(self) -> list[Tensor]:
        parts = [self.running_cov] if self.running_cov.numel() else []
        return parts + ([self.running_cov_rest.unsqueeze(0)] if self.running_cov_rest.numel() else [])

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"DecorrelatedBatchNorm({self.num_features}) expects input (N, {self.num_features}, "
                f"...), got shape {tuple(x.shape)}"
            )
        values = x.transpose(0, 1).reshape(self.num_features, -1)  # (C, m)
        m = values.shape[1]
        if self.training:
            if m < 2:
                raise ValueError(
                    f"DecorrelatedBatchNorm needs more than 1 value per channel, got input {tuple(x.shape)}"
                )
            mean = values.mean(1, keepdim=True)
            groups = self._groups(values - mean)
            covs = [g @ g.transpose(-1, -2) / m for g in groups]
            self._update_running_stats(mean.detach().squeeze(1), [c.detach() for c in covs], m)
        else:
            mean = self.running_mean.to(x.dtype).unsqueeze(1)
            groups = self._groups(values - mean)
            covs = [c.to(x.dtype) for c in self._running()]
        white = [
            inverse_sqrt(c + self.eps * torch.eye(c.shape[-1], dtype=c.dtype, device=c.device)) @ g
            for c, g in zip(covs, groups, strict=True)
        ]
        y = torch.cat([w.reshape(-1, m) for w in white]).reshape(x.shape[1], x.shape[0], *x.shape[2:])
        y = y.transpose(0, 1)
        if self.affine:
            shape = _channel_shape(x)
            y = torch.addcmul(self.bias.view(shape), y, self.weight.view(shape))
        return y.contiguous()

    def _update_running_stats(self, mean: Tensor, covs: list[Tensor], m: int) -> None:
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
            unbiased = [c * (m / (m - 1)) for c in covs]
            if self.running_cov.numel():
                self.running_cov.lerp_(unbiased[0].to(self.running_cov.dtype), factor)
            if self.running_cov_rest.numel():
                self.running_cov_rest.lerp_(unbiased[-1][0].to(self.running_cov_rest.dtype), factor)
