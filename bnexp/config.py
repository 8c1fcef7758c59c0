"""Experiment configs: YAML -> typed, validated dataclasses, and the grid of runs they expand to.

This module is the bottom layer: it imports no models, data or layers. Validation is strict and generic:
every field of the dataclasses below declares its type (and, in its metadata, a range or a pattern); an
unknown key, a wrong type or a bad value is a `ConfigError` naming the file, the line, the key path and what
is allowed. Checks that need the model registry or the datasets are passed in by the caller
(`bnexp.validate`), so they report the same locations.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import itertools
import json
import math
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from bnexp.errors import BnexpError
from bnexp.store import parse_json, read_regular
from bnexp.yamlio import YamlProblem, parse, parse_value

NormName = Literal[
    "batchnorm",
    "torch_batchnorm",
    "naive_batchnorm",
    "batchrenorm",
    "noisy_batchnorm",
    "none",
    "groupnorm",
    "layernorm",
    "instancenorm",
    "weightnorm",
    "spectralnorm",
    "l1_batchnorm",
    "linf_batchnorm",
    "decorrelated_batchnorm",
]
NORMS: tuple[str, ...] = get_args(NormName)
# Short tags used in run names: lenet5-bn_lr1x_s0.
NORM_TAGS = {
    "batchnorm": "bn",
    "torch_batchnorm": "torchbn",
    "naive_batchnorm": "naivebn",
    "batchrenorm": "brn",
    "noisy_batchnorm": "noisybn",
    "none": "",
    "groupnorm": "gn",
    "layernorm": "ln",
    "instancenorm": "in",
    "weightnorm": "wn",
    "spectralnorm": "sn",
    "l1_batchnorm": "l1bn",
    "linf_batchnorm": "linfbn",
    "decorrelated_batchnorm": "dbn",
}
WEIGHT_NORMS = ("weightnorm", "spectralnorm")  # reparametrize the weights of every conv/fc layer, not activations
BATCH_NORMS = (
    "batchnorm",
    "torch_batchnorm",
    "naive_batchnorm",
    "batchrenorm",
    "noisy_batchnorm",
    "l1_batchnorm",
    "linf_batchnorm",
    "decorrelated_batchnorm",
)
LP_BATCH_NORMS = {"l1_batchnorm": 1.0, "linf_batchnorm": float("inf")}  # norm -> p of bnexp.nn.LpBatchNorm
SAFE_NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}"  # one path component: no '/', no leading '.', <= 64 chars
MAX_RUN_NAME = 160
# earlier looks at the claims an experiment may record: their error rate is a multivariate normal integral whose
# cost grows with the looks (0.26 s for 5 and the final one; 20 took 21 s), and nobody looks more often than this
MAX_LOOKS = 5
# text that goes into a Markdown table cell (which escapes '|') and between README's comment markers: one line,
# no control characters, no HTML comment delimiters
ONE_LINE = {
    "pattern": r"(?!.*(<!--|-->))[^\x00-\x1f\x7f]{1,400}",
    "pattern_help": "one line of at most 400 "
    "characters, without control characters or the comment delimiters '<!--' and '-->'",
}
UINT32 = 2**32 - 1


class ConfigError(BnexpError):
    """A config problem, located: `where` is "file:line" or "--set key=value"."""

    def __init__(self, where: str, key: str, message: str):
        self.where, self.key, self.message = where, key, message
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


def _range(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> dict:
    return {"lo": lo, "hi": hi, "lo_open": lo_open}


def _pair(lo: float | None = None, hi: float | None = None) -> dict:
    """Two numbers [a, b] with a <= b."""
    return {"pair": True, **_range(lo, hi)}


@dataclass(frozen=True)
class DatasetConfig:
    name: Literal["fashion_mnist", "mnist", "cifar100"]
    subset: int | None = field(default=None, metadata=_range(1))  # class-balanced train subset size
    test_subset: int | None = field(default=None, metadata=_range(1))  # class-balanced test subset size
    # standardize: (x/255 - mean)/std with the train split's statistics; unit: x/255 (torchvision ToTensor)
    normalize: Literal["standardize", "unit"] = "standardize"
    verify_checksums: bool = True  # md5 of the files against torchvision's list; off for your own files
    # CIFAR is a Python pickle: unpickling an unverified file can run code. Off, unverified pickles are refused.
    trust_unverified_pickles: bool = False
    resize: int | None = field(default=None, metadata=_range(8, 1024))  # bilinear resize on the device, e.g. 224


@dataclass(frozen=True)
class RenormConfig:
    """Batch Renormalization's clipping: r in [1/r_max, r_max], d in [-d_max, d_max], ramped linearly from
    (1, 0) at step ramp[0] to (r_max, d_max) at step ramp[1] (the layer's count of training batches)."""

    r_max: float = field(default=3.0, metadata=_range(1.0, 1e6))
    d_max: float = field(default=5.0, metadata=_range(0.0, 1e6))
    ramp: list[int] = field(default_factory=lambda: [0, 0], metadata=_pair(0))


@dataclass(frozen=True)
class NoiseConfig:
    """Noisy BN (Santurkar et al. 2018, sec. 2.1): after BN, y -> y * a + b with a ~ N(mu_a, sd_a) and
    b ~ N(mu_b, sd_b) drawn for every activation; per channel, the four moments are themselves drawn anew at
    every training step, uniformly from these ranges."""

    mult_mean: list[float] = field(default_factory=lambda: [0.5, 1.5], metadata=_pair(-100, 100))
    mult_std: list[float] = field(default_factory=lambda: [0.0, 0.5], metadata=_pair(0, 100))
    add_mean: list[float] = field(default_factory=lambda: [-0.5, 0.5], metadata=_pair(-100, 100))
    add_std: list[float] = field(default_factory=lambda: [0.0, 0.5], metadata=_pair(0, 100))


@dataclass(frozen=True)
class ModelConfig:
    name: str = field(metadata={"pattern": SAFE_NAME})
    norm: NormName = "batchnorm"
    activation: Literal["relu", "sigmoid"] = "relu"
    groups: int = field(default=2, metadata=_range(1, 4096))  # groupnorm only
    # decorrelated_batchnorm only: channels whitened together (null: 16, Huang et al. 2018's choice)
    whitening_group: int | None = field(default=None, metadata=_range(1, 256))
    # torch's convention: running = (1 - m) * running + m * batch; null = cumulative average
    bn_momentum: float | None = field(default=0.1, metadata=_range(0.0, 1.0, lo_open=True))
    bn_eps: float = field(default=1e-5, metadata=_range(0.0, 1.0, lo_open=True))
    affine: bool = True
    # false: conv/fc layers followed by a batch norm have no bias (the norm subtracts any per-channel constant)
    bias_before_norm: bool = True
    # which layers get the norm: all (conv and hidden fc) or conv only (the fc layers then normalize nothing,
    # which separates a conv-only BN from the fc layers' per-batch statistics at tiny batches)
    norm_layers: Literal["all", "conv"] = "all"
    renorm: RenormConfig | None = None  # batchrenorm only (default: the paper's r_max 3, d_max 5, no ramp)
    noise: NoiseConfig | None = None  # noisy_batchnorm only (default: the ranges above)
    dropout: float = field(default=0.0, metadata=_range(0.0, 1.0))  # after hidden fc layers (alexnet)
    # N(0, init_std) weights and zero biases for every conv/fc layer; null = torch's default init
    init_std: float | None = field(default=None, metadata=_range(0.0, 100.0, lo_open=True))
    # this model's own learning-rate multipliers, instead of the experiment's (e.g. BN-x30 without a no-BN x30)
    lr_multipliers: list[float] | None = field(
        default=None, metadata={"nonempty": True, **_range(0.0, 1e6, lo_open=True)}
    )
    # this model's own seeds, instead of the experiment's (e.g. more seeds at one learning rate)
    seeds: list[int] | None = field(default=None, metadata={"nonempty": True, "max_len": 1000, **_range(0, UINT32)})
    label: str | None = field(default=None, metadata={"pattern": SAFE_NAME})  # replaces the model part of names

    @property
    def tag(self) -> str:
        if self.label:
            return self.label
        parts = [
            self.name,
            NORM_TAGS[self.norm],
            "conv" if self.norm_layers == "conv" and self.norm != "none" else "",
            "sigmoid" if self.activation == "sigmoid" else "",
        ]
        return "-".join(p for p in parts if p)


@dataclass(frozen=True)
class OptimizerConfig:
    name: Literal["sgd", "adam"]
    lr: float = field(metadata=_range(0.0, 1e6, lo_open=True))
    momentum: float = field(default=0.0, metadata=_range(0.0, 1.0))  # sgd only
    weight_decay: float = field(default=0.0, metadata=_range(0.0, 1e3))


@dataclass(frozen=True)
class ProbeConfig:
    """Distributions of pre-activation values (the input of each ReLU/Sigmoid, i.e. after the norm)."""

    at_epochs: list[int] = field(default_factory=list, metadata=_range(1, 1_000_000))
    epoch_position: Literal["last", "first"] = "last"  # which step of those epochs is captured
    every_steps: int | None = field(default=None, metadata=_range(1))
    layers: Literal["all", "last"] | list[int] = field(default="all", metadata=_range(-1000, 1000))
    bins: int = field(default=60, metadata=_range(1, 10_000))
    range: list[float] = field(default_factory=lambda: [-6.0, 6.0], metadata={"strict_pair": True})
    percentiles: list[float] = field(
        default_factory=lambda: [15.0, 50.0, 85.0], metadata={"nonempty": True, "max_len": 99, **_range(0, 100)}
    )
    unit: int = field(default=0, metadata=_range(0, 1_000_000))  # channel whose own percentiles are also recorded


@dataclass(frozen=True)
class LandscapeConfig:
    """Santurkar et al.'s Fig. 4: every `every_steps` steps, the loss and gradient at theta - eta * g for each
    eta (multiples of the run's lr, or absolute with `absolute: true`), on the same batch."""

    every_steps: int = field(default=100, metadata=_range(1))
    etas: list[float] = field(
        default_factory=lambda: [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0],
        metadata={"nonempty": True, "max_len": 64, **_range(0.0, 1e6, lo_open=True)},
    )
    absolute: bool = False


@dataclass(frozen=True)
class IcsConfig:
    """Internal covariate shift as Santurkar et al. sec. 2.2 define it, every `every_steps` steps."""

    every_steps: int = field(default=100, metadata=_range(1))


@dataclass(frozen=True)
class EvalModesConfig:
    """The eval_modes analysis: a trained model's test accuracy under the ways a BN model can be evaluated."""

    batch_sizes: list[int] = field(default_factory=lambda: [2, 8, 32, 256], metadata={"nonempty": True, **_range(2)})
    group_size: int = field(default=32, metadata=_range(2, 4096))  # homogeneous / near-duplicate batches
    groups: int = field(default=40, metadata=_range(1, 10_000))  # how many such batches of each kind
    shift_pixels: int = field(default=2, metadata=_range(0, 8))  # near-duplicates: random shifts up to this
    noise_std: float = field(default=0.05, metadata=_range(0.0, 1.0))  # ... plus Gaussian noise (x/255 units)
    reestimate_batches: list[int] = field(
        default_factory=lambda: [1, 10, 100], metadata={"nonempty": True, **_range(1, 100_000)}
    )


@dataclass(frozen=True)
class LongSequencesConfig:
    """The long_sequences analysis: test accuracy with every image row repeated k times (sequences k times as
    long as in training), for each k in `stretch` (1 = the ordinary test set)."""

    stretch: list[int] = field(default_factory=lambda: [1, 2, 4], metadata={"nonempty": True, **_range(1, 16)})


@dataclass(frozen=True)
class AnalysesConfig:
    """Post-training analyses, run on each completed run's final weights (`bnexp analyze`)."""

    eval_modes: EvalModesConfig | None = None
    scale_invariance: bool = False  # BN((aW)u) = BN(Wu) and the 1/a gradient on the trained model's layers
    step_cost: bool = False  # time per training step / the same model's with BN, alternating reps, one thread
    long_sequences: LongSequencesConfig | None = None  # accuracy on k-times-longer sequences (recurrent models)


@dataclass(frozen=True)
class SeriesRef:
    """A curve published with an article, from a JSON file beside the config (`configs/references/...`)."""

    file: str = field(
        metadata={
            "pattern": r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}",
            "pattern_help": "a relative path inside the config's folder (letters, digits, _ . / -)",
        }
    )
    key: str
    quantity: Literal["train_loss_per_step", "train_acc_per_epoch", "test_acc_per_epoch"]


@dataclass(frozen=True)
class ReferenceConfig:
    """Figures reported by the articles, for `bnexp report`. Keys are variants: run names without the seed
    (e.g. lenet5-bn_lr1x); `final` values are compared with the summary key of the same name."""

    source: str
    note: str = ""
    test_acc_at_epoch: dict[str, dict[int, float]] = field(default_factory=dict)
    test_acc_at_step: dict[str, dict[int, float]] = field(default_factory=dict)
    final: dict[str, dict[str, float]] = field(default_factory=dict)  # variant -> {summary key: value}
    series: dict[str, list[SeriesRef]] = field(default_factory=dict)  # variant -> the author's curves


# quantity -> kind ("value": a number per run; "proportion": true/false per run) and what `at` means
CLAIM_QUANTITIES: dict[str, str] = {
    "final_test_acc": "value",
    "best_test_acc": "value",
    "final_train_loss": "value",
    "test_acc_at_epoch": "value",
    "test_acc_at_step": "value",
    "steps_to_loss_below": "value",
    "last_epoch_loss": "value",
    "steps_to_test_acc": "value",
    "left_chance_step": "value",
    "near_chance_at_end": "proportion",
    "landscape_loss_range": "value",
    "landscape_grad_predictiveness": "value",
    "landscape_beta_smoothness": "value",
    "ics_shift": "value",
    "drift_of_mean": "value",
    "drift_of_sd": "value",
    "unit_percentile_drift": "value",
    "feature_sd_spread": "value",
    "linear_region_share": "value",
    "effective_step_shrink": "value",
    "weight_norm_growth": "value",
    "eval_mode_acc": "value",
    "running_var_gap": "value",
    "scale_output_change": "value",
    "scale_grad_ratio_error": "value",
    "step_time_ratio_to_bn": "value",
    "long_sequence_acc": "value",
}
# what `at` is for the quantities that need or take one (number: required; layer: optional 1-based layer)
CLAIM_AT = {
    "test_acc_at_epoch": "number",
    "test_acc_at_step": "number",
    "steps_to_loss_below": "number",
    "steps_to_test_acc": "number",
    "ics_shift": "layer",
    "drift_of_mean": "layer",
    "drift_of_sd": "layer",
    "effective_step_shrink": "layer",
    "weight_norm_growth": "layer",
    "running_var_gap": "layer",
    "linear_region_share": "layer",
    "long_sequence_acc": "number",
    "eval_mode_acc": "mode",
}
EVAL_MODES = (
    "a_eval",
    "b_batch_stats_shuffled",
    "c_batch_stats_homogeneous",
    "c_eval_homogeneous",
    "c_batch_stats_near_duplicates",
    "c_eval_near_duplicates",
    "d_lost_running_stats",
    "e_reestimated",
)


@dataclass(frozen=True)
class ClaimConfig:
    """A claim of an article, checked on this experiment's runs (`bnexp report`'s claims table).

    `group` (and `versus`) are variants: run names without the seed, e.g. lenet5-bn_lr1x or lenet5-gn_b8_lr1x.
    expect greater / less: group's quantity above / below versus's (or `value`); equivalent: within ±margin of
    versus's (two one-sided tests); consistent: the article's single run `value` (or values per `at`, a mapping)
    lies in the 95 % prediction interval of our runs. With `versus_at`, the comparison is with the same quantity
    at another `at` (of versus, or of the group itself), paired by seed: e.g. one model's accuracy in two
    evaluation modes."""

    id: str = field(metadata={"pattern": SAFE_NAME})
    claim: str = field(metadata=ONE_LINE)
    source: str = field(metadata=ONE_LINE)  # article file and passage, or paper and figure
    quantity: Literal[tuple(CLAIM_QUANTITIES)]  # type: ignore[valid-type]
    group: str
    expect: Literal["greater", "less", "equivalent", "consistent"]
    versus: str | None = None
    at: float | str | None = None
    versus_at: float | str | None = None  # compare with the quantity at this `at` instead (same group by default)
    margin: float | None = field(default=None, metadata=_range(0.0, 1e9, lo_open=True))
    value: float | dict[float, float] | None = None
    figure: str | None = field(default=None, metadata={"pattern": SAFE_NAME})


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = field(metadata={"pattern": SAFE_NAME})
    dataset: DatasetConfig
    models: list[ModelConfig] = field(metadata={"nonempty": True, "max_len": 100})
    optimizer: OptimizerConfig
    batch_size: int = field(metadata=_range(1, 65_536))
    seeds: list[int] = field(metadata={"nonempty": True, "max_len": 1000, **_range(0, UINT32)})
    lr_multipliers: list[float] = field(
        default_factory=lambda: [1.0], metadata={"nonempty": True, "max_len": 100, **_range(0.0, 1e6, lo_open=True)}
    )
    # any config key path (as --set takes) -> values; every combination is a run, with its value in the name
    grid: dict[str, list[Any]] = field(default_factory=dict)
    # linear: lr x batch_size / lr_base_batch (Goyal et al.; the GroupNorm paper's 0.1 x B/32)
    lr_scaling: Literal["none", "linear"] = "none"
    lr_base_batch: int | None = field(default=None, metadata=_range(1, 65_536))
    epochs: int | None = field(default=None, metadata=_range(1, 100_000))
    steps: int | None = field(default=None, metadata=_range(1, 10**9))
    eval_every: int | None = field(default=None, metadata=_range(1, 10**9))  # steps; default: every epoch
    checkpoint_every: int | None = field(default=None, metadata=_range(1, 10**9))  # steps; default: evaluations
    eval_batch_size: int = field(default=500, metadata=_range(1, 100_000))  # 500-800 is fastest on CPU (cache)
    log_every: int = field(default=50, metadata=_range(1, 100_000))  # steps between training-loss records
    loss_ceiling: float | None = field(default=None, metadata=_range(0.0, 1e30, lo_open=True))  # above = diverged
    thresholds: list[float] = field(default_factory=list, metadata={"max_len": 100, **_range(0.0, 1.0)})
    eval_train_subset: int | None = field(default=None, metadata=_range(1))  # also eval on N train images
    probes: ProbeConfig | None = None
    landscape_probe: LandscapeConfig | None = None
    ics_probe: IcsConfig | None = None
    weight_norms: bool = False  # per layer |W| and the last step's |dW|/|W| at every evaluation
    keep_final_weights: bool = False  # weights.pt at the end (for analyses; never committed)
    analyses: AnalysesConfig | None = None
    # data-parallel processes per run (torch.distributed; `bnexp run` starts them, or torchrun); batch_size
    # stays the global batch, each process trains on batch_size / processes of it
    processes: int = field(default=1, metadata=_range(1, 1024))
    # with several processes: batch statistics per process or synchronized across them
    bn_sync: Literal["local", "sync"] = "local"
    bn_running_stats: Literal["rank0", "reduce"] = "rank0"  # local BN: rank 0's running stats, or their mean
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    deterministic: bool = True  # deterministic algorithms (always on CPU; on CUDA it costs speed)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast convs/matmuls; BN statistics stay fp32
    compile: bool = False  # torch.compile the model; probe steps run eagerly
    description: str = ""
    reference: ReferenceConfig | None = None
    claims: list[ClaimConfig] = field(default_factory=list, metadata={"max_len": 200})
    # the seed counts at which the claims were looked at before more seeds were added (the report says what
    # those earlier looks cost; a number of seeds fixed in advance needs none)
    interim_looks: list[int] = field(default_factory=list, metadata={"max_len": MAX_LOOKS, **_range(1, UINT32)})
    smoke: dict[str, Any] = field(default_factory=dict)  # `--smoke` applies these key-path overrides


@dataclass(frozen=True)
class RunPlan:
    """One cell of the grid: a model at one learning rate with one seed (and one value of each grid key)."""

    name: str
    model: ModelConfig
    lr_multiplier: float
    seed: int
    experiment: ExperimentConfig  # with this cell's grid values applied
    grid: tuple[tuple[str, Any], ...] = ()  # (key path, value) of this cell

    @property
    def variant(self) -> str:
        return self.name.rsplit("_s", 1)[0]

    @property
    def lr(self) -> float:
        exp = self.experiment
        scale = exp.batch_size / exp.lr_base_batch if exp.lr_scaling == "linear" else 1.0
        return exp.optimizer.lr * self.lr_multiplier * scale

    def resolved(self) -> dict[str, Any]:
        """Everything that determines this run, as plain data (written to the run's config.yaml). The
        number of data-parallel processes is part of it (it changes what BN computes)."""
        exp = dataclasses.asdict(self.experiment)
        for key in ("models", "seeds", "lr_multipliers", "grid"):
            exp.pop(key)
        return {
            "run": self.name,
            # the model's own lr_multipliers/seeds only say which runs exist; this run's are below
            "model": {k: v for k, v in dataclasses.asdict(self.model).items() if k not in ("lr_multipliers", "seeds")},
            "lr_multiplier": self.lr_multiplier,
            "lr": self.lr,
            "seed": self.seed,
            **({"grid": {k: v for k, v in self.grid}} if self.grid else {}),
            **exp,
        }


# keys that do not change what a run computes: editing them never invalidates a started run
# (eval_batch_size only reorders the float sum of the test loss, ~1e-6 relative; accuracy is unchanged)
NOT_COMPARED = ("description", "reference", "smoke", "eval_batch_size", "analyses", "claims", "interim_looks")
# the model entry's lr_multipliers/seeds only say which runs exist (recorded by older versions)
NOT_COMPARED_PATHS = ("model.lr_multipliers", "model.seeds")
_MISSING = object()


def _default_at(path: list[str]) -> Any:
    """The schema default of a resolved-config key path (`dataset.normalize`, `model.renorm`), or _MISSING."""
    cls: Any = ExperimentConfig
    for i, key in enumerate(path):
        if i == 0 and key == "model":
            cls = ModelConfig
            continue
        fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        if key not in fields:
            return _MISSING
        f = fields[key]
        if i == len(path) - 1:
            if f.default is not dataclasses.MISSING:
                return f.default
            return f.default_factory() if f.default_factory is not dataclasses.MISSING else _MISSING
        hints = typing.get_type_hints(cls)
        cls = next((a for a in (*get_args(hints[key]), hints[key]) if dataclasses.is_dataclass(a)), None)
    return _MISSING


def config_diff(old: Any, new: Any, path: tuple[str, ...] = ()) -> list[str]:
    """The differences between a run's recorded config and today's. A key that an older bnexp did not record
    counts as equal when today's value is its default (what that version ran with)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            p = (*path, str(key))
            if (not path and key in NOT_COMPARED) or ".".join(p) in NOT_COMPARED_PATHS:
                continue
            if key not in old and _default_at(list(p)) == new[key]:
                continue
            out += config_diff(old.get(key), new.get(key), p)
        return out
    return [] if old == new else [f"{'.'.join(path)}: {old!r} -> {new!r}"]


def variant_name(model: ModelConfig, lr_multiplier: float, grid: Sequence[tuple[str, Any]] = ()) -> str:
    """A run's name without its seed: what seeds are averaged over (e.g. lenet5-bn_lr1x, lenet5-gn_b8_lr1x)."""
    return "_".join([model.tag, *(grid_tag(k, v) for k, v in grid), f"lr{lr_multiplier:g}x"])


GRID_ABBREVIATIONS = {
    "batch_size": "b",
    "optimizer.lr": "olr",
    "optimizer.momentum": "mom",
    "epochs": "ep",
    "processes": "p",
    "bn_sync": "",
    "bn_running_stats": "rs",
}


def grid_tag(path: str, value: Any) -> str:
    """`batch_size=8` -> b8; `models[0].bn_momentum=0.01` -> bn_momentum0.01; null -> 'none'."""
    short = GRID_ABBREVIATIONS[path] if path in GRID_ABBREVIATIONS else re.sub(r"\[\d+\]", "", path).rsplit(".", 1)[-1]
    text = "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "-", f"{short}{text}")


def expand_grid(cfg: ExperimentConfig) -> list[RunPlan]:
    """grid cells x models x lr multipliers x seeds, in that nesting order, with stable readable names."""
    plans = []
    for values, cell in grid_cells(cfg):
        for m in cell.models:
            for mult in m.lr_multipliers or cell.lr_multipliers:
                for seed in m.seeds or cell.seeds:
                    plans.append(RunPlan(f"{variant_name(m, mult, values)}_s{seed}", m, mult, seed, cell, values))
    return plans


def grid_cells(cfg: ExperimentConfig) -> list[tuple[tuple[tuple[str, Any], ...], ExperimentConfig]]:
    """Each combination of the grid's values, and the config with those values applied (grid emptied).
    A key "a,b" varies a and b together: its values are [a, b] pairs."""
    base = dataclasses.asdict(cfg)
    base["grid"] = {}
    cells = []
    for combo in itertools.product(*cfg.grid.values()):
        assignments = [pair for key, v in zip(cfg.grid, combo, strict=True) for pair in _grid_assignments(key, v)]
        data = copy.deepcopy(base)
        for key, value in assignments:
            _set_path(data, key, copy.deepcopy(value), "grid")
        cells.append((tuple(assignments), _build(ExperimentConfig, data, "", _Source("grid", {}))))
    return cells


def _grid_assignments(key: str, value: Any) -> list[tuple[str, Any]]:
    keys = [k.strip() for k in key.split(",")]
    if len(keys) == 1:
        return [(key, value)]
    return list(zip(keys, value, strict=True))


# --------------------------------------------------------------------------------------------------------
# Loading: YAML text (+ --set overrides) -> ExperimentConfig


class _Source:
    """Where each key path came from, for error messages."""

    def __init__(self, file: str, lines: dict[str, int], overrides: dict[str, str] | None = None):
        self.file, self.lines, self.overrides = file, lines, overrides or {}

    def where(self, path: str) -> str:
        for p in _prefixes(path):
            if p in self.overrides:
                return f"--set {self.overrides[p]}"
        for p in _prefixes(path):
            if p in self.lines:
                return f"{self.file}:{self.lines[p]}"
        return self.file


Locate = Callable[[str], str]  # key path -> "file:line" (or "--set ...")
Check = Callable[[ExperimentConfig, Locate], None]  # raises ConfigError


def _prefixes(path: str) -> list[str]:
    """'a.b[0].c' -> ['a.b[0].c', 'a.b[0]', 'a.b', 'a', '']."""
    out = [path]
    while path:
        path = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path) if re.search(r"[.\[]", path) else ""
        out.append(path)
    return out


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _node_lines(node: Any, path: str = "", out: dict[str, int] | None = None) -> dict[str, int]:
    import yaml  # the node classes only

    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            sub = _join(path, str(k.value))
            out[sub] = k.start_mark.line + 1
            _node_lines(v, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _node_lines(v, _join(path, i), out)
    return out


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(str, get_args(tp)))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in get_args(tp))
    if origin is list:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of {_type_name(get_args(tp)[0])} to {_type_name(get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _check_meta(value: Any, meta: dict, path: str, src: _Source) -> None:
    def fail(msg: str, p: str = path) -> None:
        raise ConfigError(src.where(p), p, msg)

    if isinstance(value, list):
        if meta.get("nonempty") and not value:
            fail("must not be empty")
        if "max_len" in meta and len(value) > meta["max_len"]:
            fail(f"at most {meta['max_len']} values (got {len(value)})")
        if (meta.get("pair") or meta.get("strict_pair")) and len(value) != 2:
            fail(f"expected two numbers [low, high], got {value!r}")
        if meta.get("pair") and value[0] > value[1]:
            fail(f"expected [low, high] with low <= high, got {value!r}")
        if meta.get("strict_pair") and not value[0] < value[1]:
            fail(f"expected [low, high] with low < high, got {value!r}")
    if "pattern" in meta and isinstance(value, str) and not re.fullmatch(meta["pattern"], value):
        fail(
            f"{value!r} is not allowed: use "
            + meta.get("pattern_help", "1-64 letters, digits, '_', '.', '+', '-' (not starting with '.' or '-')")
        )
    lo, hi = meta.get("lo"), meta.get("hi")
    for i, v in enumerate(value if isinstance(value, list) else [value]):
        p = _join(path, i) if isinstance(value, list) else path
        if v is None or isinstance(v, (str, bool)) or (lo is None and hi is None):
            continue
        if lo is not None and (v <= lo if meta["lo_open"] else v < lo):
            fail(f"must be {'>' if meta['lo_open'] else '>='} {lo:g} (got {v})", p)
        if hi is not None and v > hi:
            fail(f"must be <= {hi:g} (got {v})", p)


def _convert(tp: Any, value: Any, path: str, src: _Source) -> Any:
    def fail(msg: str) -> typing.NoReturn:
        raise ConfigError(src.where(path), path, msg)

    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail(f"expected a mapping with keys {', '.join(f.name for f in dataclasses.fields(tp))}, got {value!r}")
        return _build(tp, value, path, src)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        alternatives = [a for a in get_args(tp) if a is not type(None)]
        for i, alternative in enumerate(alternatives):
            try:
                return _convert(alternative, value, path, src)
            except ConfigError:
                if i == len(alternatives) - 1:
                    if len(alternatives) == 1:
                        raise
                    fail(f"expected {_type_name(tp)}, got {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            fail(f"expected {_type_name(tp)}, got {value!r}")
        key_type, value_type = get_args(tp)
        return {
            _convert(key_type, k, _join(path, str(k)), src): _convert(value_type, v, _join(path, str(k)), src)
            for k, v in value.items()
        }
    if origin is Literal:
        if value not in get_args(tp):
            fail(f"unknown value {value!r}; allowed: {', '.join(map(str, get_args(tp)))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            fail(f"expected {_type_name(tp)}, got {value!r}")
        return [_convert(get_args(tp)[0], v, _join(path, i), src) for i, v in enumerate(value)]
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        bool: isinstance(value, bool),
        Any: True,
    }[tp]
    if not ok:
        fail(f"expected {_type_name(tp)}, got {value!r}")
    if tp is float and not math.isfinite(value):
        fail(f"must be a finite number (got {value})")
    return float(value) if tp is float else value


def _build(cls: type, data: dict, path: str, src: _Source) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            p = _join(path, str(key))
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(src.where(p), p, f"unknown key; {hint}allowed: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        p = _join(path, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(src.where(path), p, f"missing required key ({_type_name(hints[name])})")
            continue
        kwargs[name] = _convert(hints[name], data[name], p, src)
        _check_meta(kwargs[name], dict(f.metadata), p, src)
    return cls(**kwargs)


def _split_path(key: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in re.split(r"\.|\[(\d+)\]\.?", key) if p]


def _set_path(data: dict, key: str, value: Any, where: str) -> str:
    """Set `data[a][b][0]...` for the key path 'a.b[0]' (or 'a.b.0'); returns the normalized path."""
    parts = _split_path(key)
    if not parts:
        raise ConfigError(where, key, "empty key path")
    node: Any = data
    path = ""
    for i, part in enumerate(parts):
        if isinstance(node, list):
            if not isinstance(part, int) or not 0 <= part < len(node):
                raise ConfigError(where, path, f"index {part!r} is not in 0..{len(node) - 1}")
        elif not isinstance(node, dict) or isinstance(part, int):
            raise ConfigError(where, path or key, "cannot index into a non-list value")
        path = _join(path, part)
        if i == len(parts) - 1:
            node[part] = value
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]
    return path


def _apply_override(data: dict, assignment: str) -> str:
    """Apply one `KEY.PATH=VALUE` (value parsed as YAML) to `data`; returns the normalized key path."""
    key, sep, raw = assignment.partition("=")
    where = f"--set {assignment}"
    if not sep or not key.strip():
        raise ConfigError(where, "", "expected KEY.PATH=VALUE, e.g. --set optimizer.lr=0.01")
    try:
        value = parse_value(raw)
    except YamlProblem as e:
        raise ConfigError(where, key, f"value is not valid YAML: {e}") from None
    return _set_path(data, key.strip(), value, where)


def from_dict(cls: type, data: Any, source: str) -> Any:
    """A config dataclass (e.g. ModelConfig) from plain data recorded in a run store, validated as strictly as
    a YAML file; errors name `source`."""
    return _convert(cls, data, "", _Source(source, {}))


MAX_RUNS = 10_000  # a plan larger than this is refused unless --max-runs raises it


def count_runs(cfg: ExperimentConfig) -> int:
    """How many runs the plan has, without building it (grid cells x each model's lr multipliers x seeds)."""
    cells = math.prod(len(v) if isinstance(v, list) else 1 for v in cfg.grid.values())
    per_cell = sum(len(m.lr_multipliers or cfg.lr_multipliers) * len(m.seeds or cfg.seeds) for m in cfg.models)
    return cells * per_cell


def load_config(
    path: str | Path,
    overrides: Sequence[str] = (),
    smoke: bool = False,
    checks: Sequence[Check] = (),
    max_runs: int = MAX_RUNS,
) -> ExperimentConfig:
    """Read a YAML experiment config, apply its `smoke:` overrides if asked, then `--set` overrides (later
    wins), and validate it strictly: the config as written and every cell of its grid, each with `checks`
    (see `bnexp.validate.load` for the checks against models and data)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), "", f"cannot read config: {e}") from None
    try:
        data, node = parse(text)
    except YamlProblem as e:
        where = ":".join(map(str, [path, *(x for x in (e.line, e.column) if x is not None)]))
        raise ConfigError(where, "", str(e)) from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", "expected a mapping of config keys at the top level")
    src = _Source(str(path), _node_lines(node) if node else {})
    written = None  # the config as written, before smoke and --set: what claims name their groups in
    if smoke or overrides:
        with contextlib.suppress(ConfigError):  # its own errors are reported below, where they apply
            written = _build(ExperimentConfig, copy.deepcopy(data), "", src)
    if smoke:
        profile = data.get("smoke") or {}
        if not isinstance(profile, dict) or not profile:
            raise ConfigError(src.where("smoke"), "smoke", "--smoke needs a `smoke:` mapping of KEY.PATH: VALUE")
        for key, value in profile.items():
            line = src.lines.get(f"smoke.{key}", 0)
            overridden = _set_path(data, str(key), copy.deepcopy(value), f"{path}:{line} (smoke)")
            # errors in what the smoke profile set are reported at its line
            for p in [p for p in src.lines if p == overridden or p.startswith((f"{overridden}.", f"{overridden}["))]:
                del src.lines[p]
            src.lines[overridden] = line
    for assignment in overrides:
        src.overrides[_apply_override(data, assignment)] = assignment
    cfg = _build(ExperimentConfig, data, "", src)
    runs = count_runs(cfg)  # before anything is expanded: a huge plan is refused at once
    if runs > max_runs:
        raise ConfigError(
            src.where("grid" if cfg.grid else "seeds"),
            "grid/models/lr_multipliers/seeds",
            f"the plan has {runs:,} runs, more than the limit of {max_runs:,}; shrink it, or raise the "
            "limit with --max-runs N",
        )
    _check_experiment(cfg, src.where, path.parent)
    for check in checks:
        check(cfg, src.where)
    seen_keys: set[str] = set()
    for key, values in cfg.grid.items():
        p = _join("grid", key)
        if not isinstance(values, list) or not values:
            raise ConfigError(src.where(p), p, "expected a non-empty list of values")
        if len(values) > 1000:
            raise ConfigError(src.where(p), p, "at most 1000 values")
        keys = [k.strip() for k in key.split(",")]
        for k in keys:
            if not k or _split_path(k)[0] in (
                "grid",
                "seeds",
                "smoke",
                "name",
                "reference",
                "description",
                "claims",
                "interim_looks",
            ):
                raise ConfigError(src.where(p), p, f"{k!r} cannot be a grid key (use seeds: for seeds)")
            if k in seen_keys:
                raise ConfigError(src.where(p), p, f"{k!r} is varied twice in the grid; give each key once")
            seen_keys.add(k)
        for j, value in enumerate(values):
            cell_src = _Source(src.file, {}, {"": f"{src.where(_join(p, j))} (grid value {value!r})"})
            cell = copy.deepcopy(data)
            cell["grid"] = {}
            if len(keys) > 1 and (not isinstance(value, list) or len(value) != len(keys)):
                raise ConfigError(
                    src.where(_join(p, j)),
                    p,
                    f"value {value!r}: expected a list of {len(keys)} values, one for each of {', '.join(keys)}",
                )
            try:
                for k, v in _grid_assignments(key, value):
                    _set_path(cell, k, copy.deepcopy(v), cell_src.where(""))
                cell_cfg = _build(ExperimentConfig, cell, "", cell_src)
                _check_experiment(cell_cfg, cell_src.where, path.parent)
                for check in checks:
                    check(cell_cfg, cell_src.where)
            except ConfigError as e:
                raise ConfigError(
                    src.where(_join(p, j)), p, f"value {value!r}: {e.key + ': ' if e.key else ''}{e.message}"
                ) from None
    if len(cfg.grid) > 1:  # each value passed alone above; rules that tie keys together must hold in every cell
        _check_combinations(cfg, data, src, path.parent, checks)
    _check_run_names(cfg, src.where)
    check_claims(written if written is not None else cfg, src.where)
    check_interim_looks(written if written is not None else cfg, src.where)
    return cfg


def _check_combinations(
    cfg: ExperimentConfig, data: dict, src: _Source, config_dir: Path, checks: Sequence[Check]
) -> None:
    """Every cell of a grid of several keys, checked as it will run: the rules that tie keys together (batch_size 2
    with processes: 4) and `checks` (a BN model at batch 1), which bnexp.validate runs once per distinct setting of
    what they read, so a 20 x 20 grid over lr and epochs builds its models once."""
    for combo in itertools.product(*cfg.grid.values()):
        assignments = [pair for key, v in zip(cfg.grid, combo, strict=True) for pair in _grid_assignments(key, v)]
        cell_text = ", ".join(f"{k}={v!r}" for k, v in assignments)
        cell_src = _Source(src.file, {}, {"": f"{src.where('grid')} (grid cell {cell_text})"})
        cell = copy.deepcopy(data)
        cell["grid"] = {}
        try:
            for k, v in assignments:
                _set_path(cell, k, copy.deepcopy(v), cell_src.where(""))
            cell_cfg = _build(ExperimentConfig, cell, "", cell_src)
            _check_experiment(cell_cfg, cell_src.where, config_dir)
            for check in checks:
                check(cell_cfg, cell_src.where)
        except ConfigError as e:
            raise ConfigError(
                src.where("grid"), "grid", f"the cell {cell_text}: {e.key + ': ' if e.key else ''}{e.message}"
            ) from None


def interim_looks_fit(looks: list[int], seeds: int) -> bool:
    """Earlier looks come before the last: at most MAX_LOOKS increasing seed counts, each at least 1 and below
    `seeds`."""
    return len(looks) <= MAX_LOOKS and looks == sorted(set(looks)) and all(1 <= n < seeds for n in looks)


def check_interim_looks(cfg: ExperimentConfig, where: Locate) -> None:
    """The looks fit the seeds as written."""
    looks, n = cfg.interim_looks, len(cfg.seeds)
    if not interim_looks_fit(looks, n):
        raise ConfigError(
            where("interim_looks"),
            "interim_looks",
            f"{looks}: the numbers of seeds at the earlier looks, increasing and each below the {n} seeds of seeds:",
        )


def check_claims(cfg: ExperimentConfig, where: Locate) -> None:
    """Each claim's keys fit its relation and quantity, and its groups are variants of the config as written
    (a smoke profile or --set may leave some without runs: the report then says not measured)."""
    variants = list(dict.fromkeys(p.variant for p in expand_grid(cfg)))
    seen: set[str] = set()
    for i, c in enumerate(cfg.claims):
        p = f"claims[{i}]"

        def fail(key: str, message: str, p: str = p) -> typing.NoReturn:
            raise ConfigError(where(f"{p}.{key}"), f"{p}.{key}", message)

        if c.id in seen:
            fail("id", f"{c.id!r} is the id of an earlier claim; ids must be unique")
        seen.add(c.id)
        for key in ("group", "versus"):
            name = getattr(c, key)
            if name is not None and name not in variants:
                close = difflib.get_close_matches(name, variants, n=3)
                fail(
                    key,
                    f"{name!r} is not a variant of this experiment; "
                    + (f"did you mean {', '.join(map(repr, close))}? " if close else "")
                    + f"its variants: {', '.join(variants[:12])}"
                    + (" ..." if len(variants) > 12 else ""),
                )
        check_claim(c, fail)


def check_claim(c: ClaimConfig, fail: Callable[[str, str], typing.NoReturn]) -> None:
    """One claim's keys fit its relation and quantity (for a config, and for a claim recorded in a results folder);
    `fail(key, message)` raises."""
    kind = CLAIM_QUANTITIES[c.quantity]
    if c.versus_at is not None and (c.expect not in ("greater", "less", "equivalent") or c.value is not None):
        fail("versus_at", "versus_at compares two values of the runs: expect greater, less or equivalent, no value")
    compares = c.versus is not None or c.versus_at is not None
    if c.expect == "equivalent" and c.versus is None and c.versus_at is not None and c.margin is not None:
        pass
    elif c.expect == "equivalent" and (not compares or c.margin is None):
        fail(
            "margin" if compares else "versus", "expect: equivalent needs versus: VARIANT (or versus_at) and margin: M"
        )
    if c.expect in ("greater", "less") and compares == (c.value is not None):
        fail(
            "value" if c.value is not None else "versus",
            f"expect: {c.expect} compares with exactly one of versus: VARIANT (or versus_at) or value: NUMBER",
        )
    if c.expect == "consistent" and (c.value is None or c.versus is not None):
        fail("value", "expect: consistent needs the article's value: NUMBER (or {at: value, ...}) and no versus")
    if c.margin is not None and c.expect != "equivalent":
        fail("margin", f"a margin is for expect: equivalent (this claim expects {c.expect}; compare with versus)")
    if isinstance(c.value, dict) and c.expect != "consistent":
        fail("value", "a mapping of values (one per `at`) is for expect: consistent only")
    if kind == "proportion" and c.expect not in ("greater", "less"):
        fail("expect", f"{c.quantity} is a proportion: expect greater or less")
    if kind == "proportion" and c.value is not None and not 0 <= c.value <= 1:
        fail("value", f"{c.quantity} is a proportion: value must be in [0, 1]")
    _check_claim_at(c, fail)


def _check_claim_at(c: ClaimConfig, fail: Callable[[str, str], typing.NoReturn]) -> None:
    need = CLAIM_AT.get(c.quantity)
    ats = list(c.value) if isinstance(c.value, dict) else [c.at] + ([c.versus_at] if c.versus_at is not None else [])
    if isinstance(c.value, dict) and c.at is not None:
        fail("at", "give `at` inside value's mapping ({at: article value}), not both")
    for at in ats:
        if need is None and at is not None:
            fail("at", f"{c.quantity} takes no `at`")
        if need == "number" and not isinstance(at, float):
            fail("at", f"{c.quantity} needs at: NUMBER (an epoch, step or threshold)")
        if need == "layer" and at is not None and not (isinstance(at, float) and at >= 1 and at == int(at)):
            fail("at", f"{c.quantity}: at is a layer number (1, 2, ...) or absent for the mean over layers")
        if need == "mode":
            mode, _, size = str(at).partition("@")
            if mode not in EVAL_MODES or (size and not re.fullmatch(r"[0-9]{1,9}", size)):
                fail("at", f"eval_mode_acc needs at: MODE or MODE@N, MODE one of {', '.join(EVAL_MODES)}")


def _check_run_names(cfg: ExperimentConfig, where: Locate) -> None:
    seen: dict[str, str] = {}
    for plan in expand_grid(cfg):
        if len(plan.name) > MAX_RUN_NAME:
            raise ConfigError(
                where("models"),
                "models",
                f"run name {plan.name[:60]!r}... is longer than "
                f"{MAX_RUN_NAME} characters; give the model a shorter label",
            )
        if plan.name in seen:
            raise ConfigError(
                where("lr_multipliers"),
                "lr_multipliers/grid",
                f"two runs would share the name "
                f"{plan.name!r} ({seen[plan.name]} and {_cell_text(plan)}); make the values distinct "
                "in their first 6 significant digits",
            )
        seen[plan.name] = _cell_text(plan)


def _cell_text(plan: RunPlan) -> str:
    return ", ".join([f"lr multiplier {plan.lr_multiplier!r}", *(f"{k}={v!r}" for k, v in plan.grid)])


def _check_experiment(cfg: ExperimentConfig, where: Locate, config_dir: Path) -> None:
    """Rules that involve several keys (and nothing outside this module)."""
    if (cfg.epochs is None) == (cfg.steps is None):
        raise ConfigError(where("epochs"), "epochs/steps", "give exactly one of epochs or steps")
    if cfg.steps is not None and cfg.eval_every is None:
        raise ConfigError(where("steps"), "eval_every", "step-based runs (steps:) need eval_every: N")
    if cfg.lr_scaling == "linear" and cfg.lr_base_batch is None:
        raise ConfigError(
            where("lr_scaling"),
            "lr_base_batch",
            "lr_scaling: linear needs lr_base_batch: B (the batch size at which the configured lr applies)",
        )
    seen: dict[str, tuple[int, ModelConfig]] = {}
    for i, m in enumerate(cfg.models):
        p = f"models[{i}]"
        # two entries may share a name only to add runs (other lr multipliers or seeds) of the same model
        same = dataclasses.replace(m, lr_multipliers=None, seeds=None)
        if m.tag in seen and seen[m.tag][1] != same:
            raise ConfigError(
                where(p),
                p,
                f"same run name {m.tag!r} as models[{seen[m.tag][0]}] but a different "
                "model; give one of them a distinct label",
            )
        seen.setdefault(m.tag, (i, same))
        if m.renorm is not None and m.norm != "batchrenorm":
            raise ConfigError(where(f"{p}.renorm"), f"{p}.renorm", "only for norm: batchrenorm")
        if m.noise is not None and m.norm != "noisy_batchnorm":
            raise ConfigError(where(f"{p}.noise"), f"{p}.noise", "only for norm: noisy_batchnorm")
        if m.whitening_group is not None and m.norm != "decorrelated_batchnorm":
            raise ConfigError(
                where(f"{p}.whitening_group"), f"{p}.whitening_group", "only for norm: decorrelated_batchnorm"
            )
        if m.lr_multipliers and len(set(m.lr_multipliers)) != len(m.lr_multipliers):
            raise ConfigError(where(f"{p}.lr_multipliers"), f"{p}.lr_multipliers", f"duplicates in {m.lr_multipliers}")
        if m.seeds and len(set(m.seeds)) != len(m.seeds):
            raise ConfigError(where(f"{p}.seeds"), f"{p}.seeds", f"duplicate seeds in {m.seeds}")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(where("seeds"), "seeds", f"duplicate seeds in {cfg.seeds}")
    if len(set(cfg.lr_multipliers)) != len(cfg.lr_multipliers):
        raise ConfigError(where("lr_multipliers"), "lr_multipliers", f"duplicates in {cfg.lr_multipliers}")
    if cfg.processes > 1:
        _check_processes(cfg, where)
    if cfg.dataset.subset is not None and cfg.dataset.subset < cfg.batch_size:
        raise ConfigError(
            where("dataset.subset"),
            "dataset.subset",
            f"{cfg.dataset.subset} images cannot fill one batch of {cfg.batch_size}",
        )
    if cfg.reference is not None:
        for variant, refs in cfg.reference.series.items():
            for j, ref in enumerate(refs):
                p = f"reference.series.{variant}[{j}]"
                load_series(config_dir, ref, where(p), p)


def _check_processes(cfg: ExperimentConfig, where: Locate) -> None:
    n = cfg.processes

    def fail(key: str, message: str) -> typing.NoReturn:
        raise ConfigError(where(key), key, message)

    if cfg.batch_size % n:
        fail(
            "batch_size",
            f"{cfg.batch_size} (the global batch) is not divisible by processes: {n}; use a multiple of {n}",
        )
    norms = {m.norm for m in cfg.models}
    if norms & set(BATCH_NORMS) and cfg.batch_size // n < 2:
        fail(
            "batch_size",
            f"{cfg.batch_size} over {n} processes leaves {cfg.batch_size // n} image per process: "
            "batch statistics need at least 2",
        )
    if cfg.bn_sync == "sync" and not norms & set(BATCH_NORMS):
        fail(
            "bn_sync",
            "sync synchronizes batch statistics, and no model here has a batch norm "
            f"({', '.join(sorted(norms))}); use bn_sync: local",
        )
    unsynced = sorted(norms & {"naive_batchnorm", "decorrelated_batchnorm", *LP_BATCH_NORMS})
    if cfg.bn_sync == "sync" and unsynced:
        fail(
            "bn_sync",
            f"sync is not available for {', '.join(unsynced)}; allowed with sync: batchnorm, batchrenorm, "
            "noisy_batchnorm (any backend), torch_batchnorm (CUDA)",
        )
    if cfg.compile:
        fail("compile", "compile: true is for one process; set it to false with processes > 1")
    if cfg.landscape_probe or cfg.ics_probe:
        fail(
            "landscape_probe" if cfg.landscape_probe else "ics_probe",
            "the landscape and ICS probes measure one process's model; use processes: 1",
        )


def load_series(config_dir: Path, ref: SeriesRef, where: str = "", key: str = "") -> dict[str, Any]:
    """A reference series file's entry: {"values": [...], "provenance": ...}. The file must lie inside the
    config's folder tree (references are read-only inputs; no path from a config may leave it)."""

    def fail(msg: str) -> typing.NoReturn:
        raise ConfigError(where or ref.file, key, msg)

    root = config_dir.resolve()
    target = (root / ref.file).resolve()
    if ".." in Path(ref.file).parts or not target.is_relative_to(root):
        fail(f"{ref.file!r} must be a path inside {root}")
    try:
        content = parse_json(read_regular(target))
    except FileNotFoundError:
        fail(f"series file {target} not found")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, BnexpError) as e:
        fail(f"series file {target} is not readable JSON ({e})")
    series = content.get("series", {}) if isinstance(content, dict) else {}
    entry = series.get(ref.key)
    if not isinstance(entry, dict) or not isinstance(entry.get("values"), list):
        fail(f"series file {target} has no series {ref.key!r}; it has: {', '.join(series) or 'none'}")
    values = entry["values"]
    if not values or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        fail(f"series {ref.key!r} in {target} must be a non-empty list of finite numbers")
    return {**entry, "source": content.get("source", {})}
