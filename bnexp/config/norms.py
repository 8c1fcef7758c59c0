"""The normalizations a config may name: one table from names to what the rest of bnexp needs to know about each.

The layers themselves are built by `bnexp.nn.norms` (torch lives above this layer); everything else — run-name
tags, the human names and colours of figures, which norms use batch statistics, which can be synchronized across
processes, the conventions recorded in a run's summary (its implementation, how it takes the batch's variance and
the running one) — is read from `NORMS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Norm:
    tag: str  # in run names: lenet5-bn_lr1x_s0 ("" for none)
    label: str  # in figures and reports
    # the same in every figure: Okabe & Ito's colour-blind-safe palette (and its grey); no norm orange and BN blue
    # as in the main article; norms that one experiment compares never share a colour (test_norms checks it), so a
    # colour stands for a norm only among the norms of one figure
    color: str
    batch_statistics: bool = False  # normalizes with the batch's statistics (needs batches of at least 2)
    weights: bool = False  # reparametrizes the weights of every conv/fc layer instead of normalizing activations
    sync: Literal["any", "cuda", "none"] = "none"  # where bn_sync: sync can synchronize its statistics
    implementation: str = ""  # the layer, as a run's summary records it (batch norms)
    # the batch norms' conventions, as a run's summary records them: BN's unless the norm says otherwise
    train_variance: str = "biased (divide by m)"
    running_variance: str = "unbiased (m / (m - 1))"
    p: float | None = None  # the ℓp batch norms' p
    option: str | None = None  # the model key that configures this norm only


LP_RUNNING_VARIANCE = "running_var is the running average of s^2 (no m / (m - 1) factor)"

NORMS: dict[str, Norm] = {
    "batchnorm": Norm("bn", "BN", "#0072B2", True, sync="any", implementation="bnexp.nn.BatchNorm (analytic backward)"),
    "torch_batchnorm": Norm(
        "torchbn", "torch BN", "#D55E00", True, sync="cuda", implementation="torch.nn.BatchNorm1d/2d"
    ),
    "naive_batchnorm": Norm(
        "naivebn",
        "naive BN",
        "#009E73",
        True,
        implementation="bnexp.nn.NaiveBatchNorm (autograd through mean/var)",
    ),
    "batchrenorm": Norm(
        "brn",
        "Batch Renorm",
        "#CC79A7",
        True,
        sync="any",
        implementation="bnexp.nn.BatchRenorm (BatchNorm with clipped r, d corrections)",
        option="renorm",
    ),
    "noisy_batchnorm": Norm(
        "noisybn",
        "noisy BN",
        "#009E73",
        True,
        sync="any",
        implementation="bnexp.nn.NoisyBatchNorm (BatchNorm plus per-step random scale and shift)",
        option="noise",
    ),
    "none": Norm("", "no norm", "#E69F00"),
    "groupnorm": Norm("gn", "GroupNorm", "#009E73"),
    "layernorm": Norm("ln", "LayerNorm", "#D55E00"),
    "instancenorm": Norm("in", "InstanceNorm", "#999999"),
    "weightnorm": Norm("wn", "Weight Norm", "#56B4E9", weights=True),
    "spectralnorm": Norm("sn", "Spectral Norm", "#999999", weights=True),
    "l1_batchnorm": Norm(
        "l1bn",
        "ℓ1 BN",
        "#CC79A7",
        True,
        implementation="bnexp.nn.LpBatchNorm(p=1) (divides by the mean absolute deviation; autograd)",
        p=1.0,
        train_variance="none: divides by sqrt(s^2 + eps), s = mean absolute deviation of the centred batch per channel",
        running_variance=LP_RUNNING_VARIANCE,
    ),
    "linf_batchnorm": Norm(
        "linfbn",
        "ℓ∞ BN",
        "#000000",
        True,
        implementation="bnexp.nn.LpBatchNorm(p=inf) (divides by the largest absolute deviation; autograd)",
        p=float("inf"),
        train_variance="none: divides by sqrt(s^2 + eps), s = largest absolute deviation of the centred batch per "
        "channel",
        running_variance=LP_RUNNING_VARIANCE,
    ),
    "decorrelated_batchnorm": Norm(
        "dbn",
        "ZCA-whitened BN",
        "#D55E00",
        True,
        implementation="bnexp.nn.DecorrelatedBatchNorm (ZCA whitening per group of channels)",
        option="whitening_group",
        train_variance="whitened: Sigma^(-1/2) (x - mean) per group, Sigma the biased batch covariance + eps I",
        running_variance="running covariance per group, unbiased (m / (m - 1))",
    ),
}
NormName = Literal[tuple(NORMS)]  # type: ignore[valid-type]
BATCH_NORMS = tuple(name for name, norm in NORMS.items() if norm.batch_statistics)
WEIGHT_NORMS = tuple(name for name, norm in NORMS.items() if norm.weights)
