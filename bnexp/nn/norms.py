"""The one place where models get their normalization layers: config `norm:` -> nn.Module."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from bnexp.config import LP_BATCH_NORMS, ModelConfig, NoiseConfig, RenormConfig
from bnexp.nn.batchnorm import BatchNorm, NaiveBatchNorm
from bnexp.nn.batchrenorm import BatchRenorm
from bnexp.nn.lpnorm import LpBatchNorm
from bnexp.nn.noisy import NoisyBatchNorm
from bnexp.nn.whitening import DecorrelatedBatchNorm

# (num_features, spatial) -> layer; spatial=True for conv feature maps (N, C, H, W), False for (N, C).
NormFactory = Callable[[int, bool], nn.Module]


def norm_factory(cfg: ModelConfig) -> NormFactory:
    """Return a builder of the normalization layer `cfg.norm` with the config's options.

    - batchnorm: bnexp.nn.BatchNorm (own forward and analytic backward); torch_batchnorm: nn.BatchNorm1d/2d;
      naive_batchnorm: the article's formula through autograd; batchrenorm: Batch Renormalization (`renorm`);
      noisy_batchnorm: BN plus Santurkar et al.'s time-varying noise (`noise`); l1_batchnorm, linf_batchnorm:
      BN dividing by the average ℓ1 / the ℓ∞ norm of the centred batch (bnexp.nn.LpBatchNorm);
      decorrelated_batchnorm: ZCA whitening of groups of `whitening_group` channels (default 16).
    - groupnorm: `groups` groups of channels per sample (the channel count must be divisible by it).
    - layernorm: all features of a sample; on conv maps that is GroupNorm(1, C) (per-channel affine).
    - instancenorm: each channel of each sample over its spatial positions; an fc feature has no spatial
      extent, so fc layers get no normalization (nn.Identity) under instancenorm.
    - weightnorm, spectralnorm: no activation normalization (nn.Identity); `build_model` reparametrizes the
      weights instead (`reparametrize_weights`).
    - none: nn.Identity.
    `norm_layers: conv` gives the fc layers nn.Identity whatever the norm.
    """

    def build(num_features: int, spatial: bool) -> nn.Module:
        c, eps, affine = num_features, cfg.bn_eps, cfg.affine
        if cfg.norm_layers == "conv" and not spatial:
            return nn.Identity()
        match cfg.norm:
            case "batchnorm":
                return BatchNorm(c, eps=eps, momentum=cfg.bn_momentum, affine=affine)
            case "batchrenorm":
                r = cfg.renorm or RenormConfig()
                return BatchRenorm(
                    c,
                    eps=eps,
                    momentum=cfg.bn_momentum,
                    affine=affine,
                    r_max=r.r_max,
                    d_max=r.d_max,
                    ramp=tuple(r.ramp),
                )
            case "noisy_batchnorm":
                n = cfg.noise or NoiseConfig()
                return NoisyBatchNorm(
                    c,
                    eps=eps,
                    momentum=cfg.bn_momentum,
                    affine=affine,
                    mult_mean=n.mult_mean,
                    mult_std=n.mult_std,
                    add_mean=n.add_mean,
                    add_std=n.add_std,
                )
            case "l1_batchnorm" | "linf_batchnorm":
                return LpBatchNorm(c, p=LP_BATCH_NORMS[cfg.norm], eps=eps, momentum=cfg.bn_momentum, affine=affine)
            case "decorrelated_batchnorm":
                return DecorrelatedBatchNorm(
                    c, group_size=cfg.whitening_group or 16, eps=eps, momentum=cfg.bn_momentum, affine=affine
                )
            case "naive_batchnorm":
                return NaiveBatchNorm(c, eps=eps, momentum=cfg.bn_momentum, affine=affine)
            case "torch_batchnorm":
                cls = nn.BatchNorm2d if spatial else nn.BatchNorm1d
                return cls(c, eps=eps, momentum=cfg.bn_momentum, affine=affine)
            case "groupnorm":
                if c % cfg.groups:
                    raise ValueError(f"groupnorm: groups={cfg.groups} does not divide a layer of {c} channels")
                return nn.GroupNorm(cfg.groups, c, eps=eps, affine=affine)
            case "layernorm":
                return (
                    nn.GroupNorm(1, c, eps=eps, affine=affine)
                    if spatial
                    else nn.LayerNorm(c, eps=eps, elementwise_affine=affine)
                )
            case "instancenorm":
                return nn.GroupNorm(c, c, eps=eps, affine=affine) if spatial else nn.Identity()
            case "none" | "weightnorm" | "spectralnorm":
                return nn.Identity()
        raise ValueError(f"unknown norm {cfg.norm!r}")

    return build
