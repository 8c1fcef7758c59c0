"""The one place where models get their normalization layers: config `norm:` -> nn.Module, one builder per name.

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

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from bnexp.config import NORMS, ModelConfig, NoiseConfig, RenormConfig
from bnexp.nn.batchnorm import BatchNorm, NaiveBatchNorm
from bnexp.nn.batchrenorm import BatchRenorm
from bnexp.nn.lpnorm import LpBatchNorm
from bnexp.nn.noisy import NoisyBatchNorm
from bnexp.nn.whitening import DecorrelatedBatchNorm

# (num_features, spatial) -> layer; spatial=True for conv feature maps (N, C, H, W), False for (N, C).
NormFactory = Callable[[int, bool], nn.Module]
Builder = Callable[[ModelConfig, int, bool], nn.Module]  # (config, num_features, spatial) -> layer


def _batch(cfg: ModelConfig) -> dict:
    return {"eps": cfg.bn_eps, "momentum": cfg.bn_momentum, "affine": cfg.affine}


def _renorm(cfg: ModelConfig, c: int, spatial: bool) -> nn.Module:
    r = cfg.renorm or RenormConfig()
    return BatchRenorm(c, **_batch(cfg), r_max=r.r_max, d_max=r.d_max, ramp=tuple(r.ramp))


def _noisy(cfg: ModelConfig, c: int, spatial: bool) -> nn.Module:
    n = cfg.noise or NoiseConfig()
    return NoisyBatchNorm(
        c, **_batch(cfg), mult_mean=n.mult_mean, mult_std=n.mult_std, add_mean=n.add_mean, add_std=n.add_std
    )


def _group(cfg: ModelConfig, c: int, spatial: bool) -> nn.Module:
    if c % cfg.groups:
        raise ValueError(f"groupnorm: groups={cfg.groups} does not divide a layer of {c} channels")
    return nn.GroupNorm(cfg.groups, c, eps=cfg.bn_eps, affine=cfg.affine)


def _layer(cfg: ModelConfig, c: int, spatial: bool) -> nn.Module:
    if spatial:
        return nn.GroupNorm(1, c, eps=cfg.bn_eps, affine=cfg.affine)
    return nn.LayerNorm(c, eps=cfg.bn_eps, elementwise_affine=cfg.affine)


def _lp(cfg: ModelConfig, c: int, spatial: bool) -> nn.Module:
    return LpBatchNorm(c, p=NORMS[cfg.norm].p, **_batch(cfg))  # p from the table: 1 or inf


def _identity(cfg: ModelConfig, c: int, spatial: bool) -> nn.Module:
    return nn.Identity()


BUILDERS: dict[str, Builder] = {
    "batchnorm": lambda cfg, c, spatial: BatchNorm(c, **_batch(cfg)),
    "torch_batchnorm": lambda cfg, c, spatial: (nn.BatchNorm2d if spatial else nn.BatchNorm1d)(c, **_batch(cfg)),
    "naive_batchnorm": lambda cfg, c, spatial: NaiveBatchNorm(c, **_batch(cfg)),
    "batchrenorm": _renorm,
    "noisy_batchnorm": _noisy,
    "none": _identity,
    "groupnorm": _group,
    "layernorm": _layer,
    "instancenorm": lambda cfg, c, spatial: (
        nn.GroupNorm(c, c, eps=cfg.bn_eps, affine=cfg.affine) if spatial else nn.Identity()
    ),
    "weightnorm": _identity,
    "spectralnorm": _identity,
    "l1_batchnorm": _lp,
    "linf_batchnorm": _lp,
    "decorrelated_batchnorm": lambda cfg, c, spatial: DecorrelatedBatchNorm(
        c, group_size=cfg.whitening_group or 16, **_batch(cfg)
    ),
}
if BUILDERS.keys() != NORMS.keys():  # every norm of the table is built here, and nothing else
    raise RuntimeError(f"bnexp.config.NORMS and BUILDERS differ: {set(BUILDERS) ^ set(NORMS)}")


def norm_factory(cfg: ModelConfig) -> NormFactory:
    """A builder of the normalization layer `cfg.norm` with the config's options."""
    build = BUILDERS[cfg.norm]

    def factory(num_features: int, spatial: bool) -> nn.Module:
        if cfg.norm_layers == "conv" and not spatial:
            return nn.Identity()
        return build(cfg, num_features, spatial)

    return factory
