"""An LSTM whose input-to-hidden and hidden-to-hidden terms and cell state are normalized: recurrent BN
(Cooijmans et al. 2016) or LayerNorm (Ba et al. 2016), or neither.

    gates_t = N_x(W_x x_t; t) + N_h(W_h h_{t-1}; t) + b,   (i, f, o, g) = split(gates_t)
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g),     h_t = sigmoid(o) * tanh(N_c(c_t; t))

Recurrent BN keeps **separate statistics for each time step** (a bnexp BatchNorm without affine per step), with
gamma and beta shared across time and gamma initialised to 0.1, as Cooijmans et al.; at a step beyond the
longest training sequence it uses the statistics of the last trained step (their rule for longer test
sequences). LayerNorm normalizes each sample over its units and needs neither a batch nor a step count.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor, nn

from bnexp.nn.batchnorm import BatchNorm

RecurrentNorm = Literal["none", "batchnorm", "layernorm"]
RECURRENT_NORMS: tuple[str, ...] = get_args(RecurrentNorm)


class StepBatchNorm(nn.Module):
    """BatchNorm with one set of batch and running statistics per time step and one shared (gamma, beta)."""

    def __init__(
        self, num_features: int, max_steps: int, gamma: float = 0.1, eps: float = 1e-5, momentum: float | None = 0.1
    ):
        super().__init__()
        self.steps = nn.ModuleList(
            BatchNorm(num_features, eps=eps, momentum=momentum, affine=False) for _ in range(max_steps)
        )
        self.weight = nn.Parameter(torch.full((num_features,), gamma))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor, t: int) -> Tensor:
        return torch.addcmul(self.bias, self.steps[min(t, len(self.steps) - 1)](x), self.weight)


class _LayerNormAnyStep(nn.LayerNorm):
    def forward(self, x: Tensor, t: int) -> Tensor:  # type: ignore[override]
        return super().forward(x)


class _NoNorm(nn.Module):
    def forward(self, x: Tensor, t: int) -> Tensor:
        return x


def _step_norm(norm: RecurrentNorm, features: int, max_steps: int, eps: float, momentum: float | None) -> nn.Module:
    if norm == "batchnorm":
        return StepBatchNorm(features, max_steps, eps=eps, momentum=momentum)
    if norm == "layernorm":
        return _LayerNormAnyStep(features, eps=eps)
    return _NoNorm()


class NormLSTM(nn.Module):
    """Reads an input (N, steps, features) one step at a time; returns the last hidden state (N, hidden)."""

    def __init__(
        self,
        input_size: int,
        hidden: int,
        norm: RecurrentNorm,
        max_steps: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
    ):
        super().__init__()
        self.hidden = hidden
        self.input_to_hidden = nn.Linear(input_size, 4 * hidden, bias=False)
        self.hidden_to_hidden = nn.Linear(hidden, 4 * hidden, bias=False)
        self.bias = nn.Parameter(torch.zeros(4 * hidden))
        with torch.no_grad():
            self.bias[hidden : 2 * hidden] = 1.0  # forget gate: remember by default
        self.norm_x = _step_norm(norm, 4 * hidden, max_steps, eps, momentum)
        self.norm_h = _step_norm(norm, 4 * hidden, max_steps, eps, momentum)
        self.norm_c = _step_norm(norm, hidden, max_steps, eps, momentum)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        h = x.new_zeros(n, self.hidden)
        c = x.new_zeros(n, self.hidden)
        inputs = self.input_to_hidden(x)  # every step's W_x x_t in one product
        for t in range(x.shape[1]):
            gates = self.norm_x(inputs[:, t], t) + self.norm_h(self.hidden_to_hidden(h), t) + self.bias
            i, f, o, g = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(self.norm_c(c, t))
        return h
