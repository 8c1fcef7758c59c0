"""BN's scale invariance (a4; the BN paper, sec. 3.3), measured on a trained model's own layers.

For each BN layer and the conv/fc layer W before it, on a fixed batch of training images u (the input that
layer sees in the trained model): BN((aW)u) = BN(Wu), and the gradient with respect to the scaled weights is
1/a times the gradient with respect to W. Measured for a from 1e-3 to 1e3, with the layer's own eps and with
eps = 0: eps breaks the identity where a^2 Var(Wu) is no longer large against it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnexp.data import Data
from bnexp.nn import BatchNorm

SCALES = [10.0**k for k in (-3, -2, -1, -0.5, 0, 0.5, 1, 2, 3)]
PROBE_IMAGES = 256


def bn_pairs(model: nn.Module) -> list[tuple[nn.Module, BatchNorm]]:
    """(conv/fc layer, the bnexp BatchNorm that normalizes its output), in forward order."""
    modules = list(model.modules())
    pairs = []
    for i, m in enumerate(modules):
        if isinstance(m, BatchNorm) and i > 0:
            prev = next((p for p in reversed(modules[:i]) if isinstance(p, (nn.Conv2d, nn.Linear))), None)
            if prev is not None:
                pairs.append((prev, m))
    return pairs


def _layer_input(model: nn.Module, layer: nn.Module, x: Tensor) -> Tensor:
    captured: list[Tensor] = []
    handle = layer.register_forward_pre_hook(lambda mod, args: captured.append(args[0].detach()))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        handle.remove()
    return captured[0]


def _apply(layer: nn.Module, weight: Tensor, bias: Tensor | None, u: Tensor) -> Tensor:
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(u, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)
    return F.linear(u, weight, bias)


def measure(layer: nn.Module, bn: BatchNorm, u: Tensor, eps: float, dtype: torch.dtype) -> list[dict[str, Any]]:
    """Relative output change and gradient ratio a * |dL/d(aW)| / |dL/dW| (1 when the identity holds) per a."""
    norm = BatchNorm(bn.num_features, eps=eps, momentum=bn.momentum, affine=bn.affine).to(dtype).train()
    if bn.affine:
        norm.load_state_dict(bn.state_dict())
    u = u.to(dtype)
    w0 = layer.weight.detach().to(dtype)
    b0 = None if layer.bias is None else layer.bias.detach().to(dtype)
    direction = torch.randn(_apply(layer, w0, b0, u).shape, generator=torch.Generator().manual_seed(0), dtype=dtype)

    def output_and_grad(scale: float) -> tuple[Tensor, Tensor]:
        w = (w0 * scale).requires_grad_()
        y = norm(_apply(layer, w, None if b0 is None else b0 * scale, u))
        (grad,) = torch.autograd.grad((y * direction).sum(), w)
        return y.detach(), grad

    y1, g1 = output_and_grad(1.0)
    rows = []
    for a in SCALES:
        ya, ga = output_and_grad(a)
        rows.append(
            {
                "a": a,
                "output_rel_error": float((ya - y1).norm() / y1.norm()),
                "grad_ratio": float(a * ga.norm() / g1.norm()),
                "grad_cosine": float(F.cosine_similarity(ga.flatten(), g1.flatten(), dim=0)),
            }
        )
    return rows


def analyze(model: nn.Module, data: Data) -> dict[str, Any]:
    pairs = bn_pairs(model)
    x = data.to_input(data.train.images[:PROBE_IMAGES])
    layers = []
    for i, (layer, bn) in enumerate(pairs):
        u = _layer_input(model, layer, x)
        with torch.no_grad():
            pre_bn = _apply(layer, layer.weight, layer.bias, u)
        layers.append(
            {
                "layer": i,
                "eps": bn.eps,
                "pre_bn_variance": float(pre_bn.var([0, *range(2, pre_bn.dim())]).mean()),
                "with_eps": measure(layer, bn, u, bn.eps, torch.float32),
                "without_eps": measure(layer, bn, u, 0.0, torch.float32),
                "without_eps_float64": measure(layer, bn, u, 0.0, torch.float64),
            }
        )
    return {"scales": SCALES, "layers": layers, "has_batchnorm": bool(pairs)}
