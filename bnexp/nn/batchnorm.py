"""bnexp's own Batch Normalization (Ioffe & Szegedy 2015, Alg. 1 and 2), with an analytic backward.

Conventions, stated once because the sources disagree:

* **Momentum** is torch's: ``running = (1 - momentum) * running + momentum * batch`` (default 0.1).
  The main article (a5) writes ``running = momentum * running + (1 - momentum) * batch`` with 0.9, which is
  the same average; Keras's ``momentum=0.99`` is torch's 0.01. ``convert_momentum`` translates.
  ``momentum=None`` is a cumulative (equal-weight) average over all batches seen, as in torch.
* **Variance.** Training normalizes with the *biased* batch variance (divide by m); the running variance
  is updated with the *unbiased* one (m / (m - 1)), as Alg. 2 of the BN paper and torch do. m is the number
  of values per channel: N x (spatial size).
* **Initial running statistics**: mean 0, variance 1 (the article starts its variance at 0, so a model
  evaluated early divides by sqrt(eps)). eps = 1e-5 inside the square root.
* Running statistics are updated under ``no_grad``: they never carry autograd history (the article's do).

The buffers and parameters are named as in ``torch.nn.BatchNorm*d`` (weight, bias, running_mean,
running_var, num_batches_tracked), so state dicts load both ways.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

MomentumConvention = Literal["torch", "article", "keras"]


def convert_momentum(value: float, source: MomentumConvention, target: MomentumConvention) -> float:
    """Translate a BN momentum between conventions.

    torch's weights the *new batch* (0.1); the article's and Keras's weight the *old average* (0.9, 0.99).
    ``convert_momentum(0.9, "article", "torch") == 0.1``; ``convert_momentum(0.99, "keras", "torch") == 0.01``.
    """
    torch_value = value if source == "torch" else 1.0 - value
    return torch_value if target == "torch" else 1.0 - torch_value


def _channel_shape(x: Tensor) -> list[int]:
    """Shape that broadcasts a per-channel vector against x of shape (N, C, *spatial)."""
    return [1, x.shape[1]] + [1] * (x.dim() - 2)


def _reduce_dims(x: Tensor) -> list[int]:
    return [0, *range(2, x.dim())]


SLICE_ELEMENTS = 1 << 19  # ~2 MB of float32 per temporary


def _channel_sum(fn, *tensors: Tensor) -> Tensor:
    """Per-channel sum of fn(*tensors) over every axis but 1, computed in slices along the batch axis.

    Slicing keeps each elementwise temporary a few MB: a fresh temporary the size of a large activation
    costs more in page faults than the arithmetic (and torch.var_mean over these axes is several times
    slower on CPU than sum()).
    """
    x = tensors[0]
    step = max(1, SLICE_ELEMENTS // max(1, x[0].numel()))
    dims = _reduce_dims(x)
    total = fn(*(t[:step] for t in tensors)).sum(dims)
    for start in range(step, x.shape[0], step):
        total += fn(*(t[start : start + step] for t in tensors)).sum(dims)
    return total


def _all_reduce(tensors: list[Tensor], group: Any) -> list[Tensor]:
    """Sum each per-channel tensor across the processes of `group`: one collective for all of them, in
    float64 (value counts stay exact, the partial sums lose nothing), cast back to each tensor's dtype."""
    flat = torch.cat([t.reshape(-1).double() for t in tensors])
    dist.all_reduce(flat, group=group)
    return [
        part.view_as(t).to(t.dtype) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors, strict=True)
    ]


def _group_moments(count: int, mean: Tensor, squares: Tensor, group: Any) -> tuple[Tensor, Tensor, int]:
    """The group's per-channel mean and sum of squared deviations, and its value count, from each process's
    own (count, mean, sum of squared deviations): one all_gather, combined by Chan et al.'s parallel rule
    M2 = sum M2_i + sum n_i (mean_i - mean)^2 in float64, so no sum of squares ever cancels."""
    local = torch.cat([mean.new_tensor([count], dtype=torch.float64), mean.double(), squares.double()])
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, local, group=group)
    table, c = torch.stack(parts), mean.numel()
    counts, means, m2s = table[:, :1], table[:, 1 : 1 + c], table[:, 1 + c :]
    total = counts.sum()
    group_mean = (counts * means).sum(0) / total
    group_squares = m2s.sum(0) + (counts * (means - group_mean).square()).sum(0)
    return group_mean.to(mean.dtype), group_squares.to(squares.dtype), int(total.item())


def register_affine(module: nn.Module, num_features: int, affine: bool) -> None:
    """Per-channel gamma (ones) and beta (zeros) as `weight` and `bias`, or both None: torch's names."""
    if affine:
        module.weight = nn.Parameter(torch.ones(num_features))
        module.bias = nn.Parameter(torch.zeros(num_features))
    else:
        module.register_parameter("weight", None)
        module.register_parameter("bias", None)


class _BatchNormTrain(torch.autograd.Function):
    """y = (x - mean) * inv_std * weight + bias with the full BN gradient (mean and inv_std depend on x).

    Only x, weight and the two per-channel statistics are saved; x_hat is recomputed in backward
    instead of keeping the intermediates of the naive formula alive. With a process `group` (synchronized
    BN), the statistics are the group's and so are the two per-channel sums the input gradient needs; the
    weight and bias gradients stay local, since the data-parallel wrapper averages them across processes.
    """

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        mean: Tensor,
        inv_std: Tensor,
        count: int,
        group: Any,
    ):
        shape = _channel_shape(x)
        scale = inv_std if weight is None else inv_std * weight
        shift = -mean * scale if bias is None else bias - mean * scale
        ctx.save_for_backward(x, weight, mean, inv_std)
        ctx.count, ctx.group = count, group
        return torch.addcmul(shift.view(shape), x, scale.view(shape)).to(x.dtype)

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, weight, mean, inv_std = ctx.saved_tensors
        shape = _channel_shape(x)
        m = ctx.count
        sum_dy = dy.sum(_reduce_dims(x), dtype=mean.dtype)
        sum_dy_xc = _channel_sum(lambda g, a: (a - mean.view(shape)).mul_(g), dy, x)  # sum(dy * (x - mean))
        dweight = sum_dy_xc * inv_std if ctx.needs_input_grad[1] else None
        dbias = sum_dy if ctx.needs_input_grad[2] else None
        dx = None
        if ctx.needs_input_grad[0]:
            if ctx.group is not None:
                sum_dy, sum_dy_xc = _all_reduce([sum_dy, sum_dy_xc], ctx.group)
            # dx = g*s * (dy - mean(dy) - x_hat * mean(dy * x_hat)), written as a*dy + b*x + c per channel
            a = inv_std if weight is None else inv_std * weight
            b = -a * inv_std * inv_std * sum_dy_xc / m
            c = -a * sum_dy / m - b * mean
            dx = torch.addcmul(c.view(shape), x, b.view(shape)).addcmul_(dy, a.view(shape)).to(x.dtype)
        return dx, dweight, dbias, None, None, None, None


class BatchNorm(nn.Module):
    """Batch Normalization over the channel axis (dim 1) of inputs (N, C) or (N, C, *spatial).

    One class covers torch's BatchNorm1d/2d/3d. In training mode it normalizes with the batch statistics
    and updates the running ones; in eval mode it uses the running statistics, unless
    ``track_running_stats=False``, in which case batch statistics are used in both modes.
    See the module docstring for the momentum and variance conventions.

    ``process_group`` (a torch.distributed group, set by ``bnexp.distributed``) makes it synchronized BN:
    the batch statistics are those of the whole group's batch, on any backend (gloo included).
    """

    process_group: Any = None
    running_var_is_variance = True  # what population statistics it can be compared with (eval_modes)

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        register_affine(self, num_features, affine)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """Mean 0, variance 1, no batch seen (torch's method of the same name)."""
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1.0)
                self.num_batches_tracked.zero_()

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )

    def _check_input(self, x: Tensor) -> None:
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) expects input (N, {self.num_features}, ...), "
                f"got shape {tuple(x.shape)}"
            )

    def _batch_stats(self, x: Tensor, dims: list[int]) -> tuple[Tensor, Tensor, int]:
        """Batch mean, biased batch variance and the number of values per channel they cover (the group's,
        when synchronized: one collective). Two passes (mean, then squared deviations): no cancellation."""
        with torch.no_grad():
            m = x.numel() // x.shape[1]
            # statistics in at least float32, also for bf16/fp16 inputs under autocast (as torch's BN)
            mean = x.sum(dims, dtype=torch.promote_types(x.dtype, torch.float32)) / m
            centered = mean.view(_channel_shape(x))
            squares = _channel_sum(lambda a: (a - centered).square_(), x)
            if self.process_group is not None:
                mean, squares, m = _group_moments(m, mean, squares, self.process_group)
        if m < 2:
            raise ValueError(
                f"BatchNorm needs more than 1 value per channel to use batch statistics, got input {tuple(x.shape)}"
            )
        return mean, squares / m, m

    def _batch_normalize(self, x: Tensor, dims: list[int]) -> tuple[Tensor, Tensor, Tensor, int]:
        """Normalize with batch statistics; returns (y, batch mean, biased batch variance, values per channel)."""
        mean, var, m = self._batch_stats(x, dims)
        inv_std = torch.rsqrt(var + self.eps)
        y = _BatchNormTrain.apply(x, self.weight, self.bias, mean, inv_std, m, self.process_group)
        return y, mean, var, m

    def _running_var_sample(self, var: Tensor, m: int) -> Tensor:
        """What one batch contributes to the running variance: the unbiased variance."""
        return var * (m / (m - 1))

    def _update_running_stats(self, mean: Tensor, var: Tensor, m: int) -> None:
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
            self.running_var.lerp_(self._running_var_sample(var, m).to(self.running_var.dtype), factor)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        use_batch_stats = self.training or not self.track_running_stats
        if not use_batch_stats:
            scale = torch.rsqrt(self.running_var + self.eps)
            shift = -self.running_mean * scale
            if self.affine:
                scale, shift = scale * self.weight, shift * self.weight + self.bias
            shape = _channel_shape(x)
            return torch.addcmul(shift.view(shape), x, scale.view(shape)).to(x.dtype)
        y, mean, var, m = self._batch_normalize(x, _reduce_dims(x))
        if self.training and self.track_running_stats:
            self._update_running_stats(mean, var, m)
        return y


class NaiveBatchNorm(BatchNorm):
    """The main article's formula, differentiated by autograd through mean and variance.

    Kept to measure the analytic backward against; the article's running-statistics defects (autograd
    history, variance starting at 0, biased running variance) are fixed by the shared base class.
    """

    def _batch_normalize(self, x: Tensor, dims: list[int]) -> tuple[Tensor, Tensor, Tensor, int]:
        m = x.numel() // x.shape[1]
        if m < 2:
            raise ValueError(f"BatchNorm needs more than 1 value per channel, got input {tuple(x.shape)}")
        mean = x.mean(dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dims, keepdim=True)
        y = (x - mean) / torch.sqrt(var + self.eps)
        if self.affine:
            shape = _channel_shape(x)
            y = self.weight.view(shape) * y + self.bias.view(shape)
        return y, mean.detach().flatten(), var.detach().flatten(), m
