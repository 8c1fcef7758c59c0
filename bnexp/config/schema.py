"""The experiment config's schema: pydantic models, strict where a YAML file is loaded, each constraint declared
on its field, and the rules that tie fields of one model together as that model's validators.

A rule names the key it is about with `rule(key, message)`, so `bnexp.config.errors` can point at its line.
Rules about the plan as a whole (run names, claims' variants, grid cells) are in `bnexp.config.load`.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from bnexp.config.datasets import DatasetName
from bnexp.config.norms import BATCH_NORMS, NORMS, NormName
from bnexp.config.quantities import EVAL_MODES, QUANTITIES

SAFE_NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}"  # one path component: no '/', no leading '.', <= 64 chars
UINT32 = 2**32 - 1
# earlier looks at the claims an experiment may record: their error rate is a multivariate normal integral whose
# cost grows with the looks (0.26 s for 5 and the final one; 20 took 21 s), and nobody looks more often than this
MAX_LOOKS = 5
Multiplicity = Literal["holm", "none"]  # an experiment's `multiplicity:` (ExperimentConfig)


def rule(at: str, message: str, key: str | None = None) -> PydanticCustomError:
    """A broken rule, located at the key path `at` (relative to the model that checks it; "" for the value
    itself) and named `key` (default: `at`), for `bnexp.config.errors.translate`."""
    return PydanticCustomError(
        "bnexp_rule", "{message}", {"at": at, "key": at if key is None else key, "message": message}
    )


def _matching(pattern: str, help_text: str) -> AfterValidator:
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise rule("", f"{value!r} is not allowed: use {help_text}")
        return value

    return AfterValidator(check)


def _ordered(strict: bool) -> AfterValidator:
    def check(value: list[float]) -> list[float]:
        if len(value) != 2:
            raise rule("", f"expected two numbers [low, high], got {value!r}")
        if not (value[0] < value[1] if strict else value[0] <= value[1]):
            raise rule("", f"expected [low, high] with low {'<' if strict else '<='} high, got {value!r}")
        return value

    return AfterValidator(check)


def _no_duplicates(model: BaseModel, keys: tuple[str, ...]) -> None:
    """The seeds and learning-rate multipliers of a model or an experiment: each value once (it names a run)."""
    for key in keys:
        values = getattr(model, key)
        if values and len(set(values)) != len(values):
            raise rule(key, f"{'duplicate seeds' if key == 'seeds' else 'duplicates'} in {values}")


Name = Annotated[str, _matching(SAFE_NAME, "1-64 letters, digits, '_', '.', '+', '-' (not starting with '.' or '-')")]
# text that goes into a Markdown table cell (which escapes '|') and between README's comment markers
OneLine = Annotated[
    str,
    _matching(
        r"(?!.*(<!--|-->))[^\x00-\x1f\x7f]{1,400}",
        "one line of at most 400 characters, without control characters or the comment delimiters '<!--' and '-->'",
    ),
]
RelativePath = Annotated[
    str,
    _matching(
        r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}", "a relative path inside the config's folder (letters, digits, _ . / -)"
    ),
]


def _iso_day(value: Any) -> Any:
    """YAML reads an unquoted 2026-12-01 as a date: it is kept as the same text (one day, compared as text)."""
    return value.isoformat() if type(value) is date else value


Day = Annotated[
    str,
    BeforeValidator(_iso_day),
    _matching(r"20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])", "a day as YYYY-MM-DD"),
]
Seed = Annotated[int, Field(ge=0, le=UINT32)]
Multiplier = Annotated[float, Field(gt=0.0, le=1e6)]


def Pair(lo: float, hi: float) -> Any:
    """Two numbers [a, b] with lo <= a <= b <= hi."""
    return Annotated[list[Annotated[float, Field(ge=lo, le=hi)]], _ordered(strict=False)]


class Schema(BaseModel):
    """Every config model: unknown keys are errors, floats are finite, nothing changes after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DatasetConfig(Schema):
    name: DatasetName
    subset: int | None = Field(default=None, ge=1)  # class-balanced train subset size
    test_subset: int | None = Field(default=None, ge=1)  # class-balanced test subset size
    # standardize: (x/255 - mean)/std with the train split's statistics; unit: x/255 (torchvision ToTensor)
    normalize: Literal["standardize", "unit"] = "standardize"
    verify_checksums: bool = True  # md5 of the files against torchvision's list; off for your own files
    # CIFAR is a Python pickle: unpickling an unverified file can run code. Off, unverified pickles are refused.
    trust_unverified_pickles: bool = False
    resize: int | None = Field(default=None, ge=8, le=1024)  # bilinear resize on the device, e.g. 224


class RenormConfig(Schema):
    """Batch Renormalization's clipping: r in [1/r_max, r_max], d in [-d_max, d_max], ramped linearly from
    (1, 0) at step ramp[0] to (r_max, d_max) at step ramp[1] (the layer's count of training batches)."""

    r_max: float = Field(default=3.0, ge=1.0, le=1e6)
    d_max: float = Field(default=5.0, ge=0.0, le=1e6)
    ramp: Annotated[list[Annotated[int, Field(ge=0)]], _ordered(strict=False)] = [0, 0]


class NoiseConfig(Schema):
    """Noisy BN (Santurkar et al. 2018, sec. 2.1): after BN, y -> y * a + b with a ~ N(mu_a, sd_a) and
    b ~ N(mu_b, sd_b) drawn for every activation; per channel, the four moments are themselves drawn anew at
    every training step, uniformly from these ranges."""

    mult_mean: Pair(-100, 100) = [0.5, 1.5]
    mult_std: Pair(0, 100) = [0.0, 0.5]
    add_mean: Pair(-100, 100) = [-0.5, 0.5]
    add_std: Pair(0, 100) = [0.0, 0.5]


class ModelConfig(Schema):
    name: Name
    norm: NormName = "batchnorm"
    activation: Literal["relu", "sigmoid"] = "relu"
    groups: int = Field(default=2, ge=1, le=4096)  # groupnorm only
    # decorrelated_batchnorm only: channels whitened together (null: 16, Huang et al. 2018's choice)
    whitening_group: int | None = Field(default=None, ge=1, le=256)
    # torch's convention: running = (1 - m) * running + m * batch; null = cumulative average
    bn_momentum: float | None = Field(default=0.1, gt=0.0, le=1.0)
    bn_eps: float = Field(default=1e-5, gt=0.0, le=1.0)
    affine: bool = True
    # false: conv/fc layers followed by a batch norm have no bias (the norm subtracts any per-channel constant)
    bias_before_norm: bool = True
    # which layers get the norm: all (conv and hidden fc) or conv only (the fc layers then normalize nothing,
    # which separates a conv-only BN from the fc layers' per-batch statistics at tiny batches)
    norm_layers: Literal["all", "conv"] = "all"
    # where the norm sits in each conv/fc block: before the activation (the BN paper's order) or after it
    norm_position: Literal["before_activation", "after_activation"] = "before_activation"
    renorm: RenormConfig | None = None  # batchrenorm only (default: the paper's r_max 3, d_max 5, no ramp)
    noise: NoiseConfig | None = None  # noisy_batchnorm only (default: the ranges above)
    dropout: float = Field(default=0.0, ge=0.0, le=1.0)  # after each hidden fc layer (lenet5, mlp, alexnet)
    # N(0, init_std) weights and zero biases for every conv/fc layer; null = torch's default init
    init_std: float | None = Field(default=None, gt=0.0, le=100.0)
    # this model's own learning-rate multipliers, instead of the experiment's (e.g. BN-x30 without a no-BN x30)
    lr_multipliers: list[Multiplier] | None = Field(default=None, min_length=1)
    # this model's own seeds, instead of the experiment's (e.g. more seeds at one learning rate)
    seeds: list[Seed] | None = Field(default=None, min_length=1, max_length=1000)
    label: Name | None = None  # replaces the model part of names

    @property
    def tag(self) -> str:
        if self.label:
            return self.label
        parts = [
            self.name,
            NORMS[self.norm].tag,
            "conv" if self.norm_layers == "conv" and self.norm != "none" else "",
            "postact" if self.norm_position == "after_activation" else "",
            "sigmoid" if self.activation == "sigmoid" else "",
        ]
        return "-".join(p for p in parts if p)

    @model_validator(mode="after")
    def _options_fit_the_norm(self) -> ModelConfig:
        for name, norm in NORMS.items():
            if norm.option and getattr(self, norm.option) is not None and self.norm != name:
                raise rule(norm.option, f"only for norm: {name}")
        if self.norm == "none" and self.norm_position != "before_activation":
            raise rule("norm_position", "a position for the norm needs a norm (this model has norm: none)")
        _no_duplicates(self, ("lr_multipliers", "seeds"))
        return self


class OptimizerConfig(Schema):
    name: Literal["sgd", "adam"]
    lr: float = Field(gt=0.0, le=1e6)
    momentum: float = Field(default=0.0, ge=0.0, le=1.0)  # sgd only
    weight_decay: float = Field(default=0.0, ge=0.0, le=1e3)


class ProbeConfig(Schema):
    """Distributions of pre-activation values (the input of each ReLU/Sigmoid, i.e. after the norm)."""

    at_epochs: list[Annotated[int, Field(ge=1, le=1_000_000)]] = []
    epoch_position: Literal["last", "first"] = "last"  # which step of those epochs is captured
    every_steps: int | None = Field(default=None, ge=1)
    layers: Literal["all", "last"] | list[Annotated[int, Field(ge=-1000, le=1000)]] = "all"
    bins: int = Field(default=60, ge=1, le=10_000)
    range: Annotated[list[float], _ordered(strict=True)] = [-6.0, 6.0]
    percentiles: list[Annotated[float, Field(ge=0, le=100)]] = Field(
        default=[15.0, 50.0, 85.0], min_length=1, max_length=99
    )
    unit: int = Field(default=0, ge=0, le=1_000_000)  # channel whose own percentiles are also recorded


class LandscapeConfig(Schema):
    """Santurkar et al.'s Fig. 4: every `every_steps` steps, the loss and gradient at theta - eta * g for each
    eta (multiples of the run's lr, or absolute with `absolute: true`), on the same batch."""

    every_steps: int = Field(default=100, ge=1)
    etas: list[Multiplier] = Field(default=[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0], min_length=1, max_length=64)
    absolute: bool = False


class IcsConfig(Schema):
    """Internal covariate shift as Santurkar et al. sec. 2.2 define it, every `every_steps` steps."""

    every_steps: int = Field(default=100, ge=1)


class EvalModesConfig(Schema):
    """The eval_modes analysis: a trained model's test accuracy under the ways a BN model can be evaluated."""

    batch_sizes: list[Annotated[int, Field(ge=2)]] = Field(default=[2, 8, 32, 256], min_length=1)
    group_size: int = Field(default=32, ge=2, le=4096)  # homogeneous / near-duplicate batches
    groups: int = Field(default=40, ge=1, le=10_000)  # how many such batches of each kind
    shift_pixels: int = Field(default=2, ge=0, le=8)  # near-duplicates: random shifts up to this
    noise_std: float = Field(default=0.05, ge=0.0, le=1.0)  # ... plus Gaussian noise (x/255 units)
    reestimate_batches: list[Annotated[int, Field(ge=1, le=100_000)]] = Field(default=[1, 10, 100], min_length=1)


class LongSequencesConfig(Schema):
    """The long_sequences analysis: test accuracy with every image row repeated k times (sequences k times as
    long as in training), for each k in `stretch` (1 = the ordinary test set)."""

    stretch: list[Annotated[int, Field(ge=1, le=16)]] = Field(default=[1, 2, 4], min_length=1)


class AnalysesConfig(Schema):
    """Post-training analyses, run on each completed run's final weights (`bnexp analyze`)."""

    eval_modes: EvalModesConfig | None = None
    scale_invariance: bool = False  # BN((aW)u) = BN(Wu) and the 1/a gradient on the trained model's layers
    step_cost: bool = False  # time per training step / the same model's with BN, alternating reps, one thread
    long_sequences: LongSequencesConfig | None = None  # accuracy on k-times-longer sequences (recurrent models)


class SeriesRef(Schema):
    """A curve published with an article, from a JSON file beside the config (`configs/references/...`)."""

    file: RelativePath
    key: str
    quantity: Literal["train_loss_per_step", "train_acc_per_epoch", "test_acc_per_epoch"]


class ReferenceConfig(Schema):
    """Figures reported by the articles, for `bnexp report`. Keys are variants: run names without the seed
    (e.g. lenet5-bn_lr1x); `final` values are compared with the summary key of the same name."""

    source: str
    note: str = ""
    test_acc_at_epoch: dict[str, dict[int, float]] = {}
    test_acc_at_step: dict[str, dict[int, float]] = {}
    final: dict[str, dict[str, float]] = {}  # variant -> {summary key: value}
    series: dict[str, list[SeriesRef]] = {}  # variant -> the author's curves


ARTICLE_SOURCE = r"a[1-5]\b"  # the five articles (REFERENCE.md: articles/a1-... to a5-...)
UNIT_TEST = r"tests/test_[a-z0-9_]{1,60}\.py::test_[a-z0-9_]{1,120}"


class ClaimConfig(Schema):
    """A claim (an article's, or of another `kind`), checked on this experiment's runs (`bnexp report`'s claims
    table).

    `group` (and `versus`) are variants: run names without the seed, e.g. lenet5-bn_lr1x or lenet5-gn_b8_lr1x.
    expect greater / less: group's quantity above / below versus's (or `value`); equivalent: within ±margin of
    versus's (two one-sided tests); consistent: the article's single run `value` (or values per `at`, a mapping:
    their mean, against each of our runs' mean over the same `at`s) lies in the 95 % prediction interval of ours.
    With `versus_at`, the comparison is with the same quantity at another `at` (of versus, or of the group
    itself), paired by seed: e.g. one model's accuracy in two evaluation modes."""

    id: Name
    claim: OneLine
    source: OneLine  # article (a1..a5) and passage, or paper and figure
    # an article claim's words in the article's own language, copied exactly from the article's file (the tests
    # check, where the articles are present, that it occurs there)
    quote: OneLine | None = None
    # article: an article's own claim (counted in the headline, the multiplicity family); the other kinds are
    # shown beneath it: literature (a paper beyond the articles), diagnostic (bnexp's own question),
    # consistency (an article's single run against ours), identity (holds by construction: a unit test checks it)
    kind: Literal["article", "literature", "diagnostic", "consistency", "identity"]
    # an identity's unit test (tests/test_FILE.py::test_NAME): it is checked there exactly, not by seeds
    checked_by: Annotated[str, _matching(UNIT_TEST, "tests/test_FILE.py::test_NAME")] | None = None
    # the day the claim's id first appeared in configs/ (git log --format=%ad --date=short -S ID -- configs/ |
    # tail -1): a claim registered after its experiment's runs began is exploratory (bnexp.claims.decide)
    registered: Day
    quantity: Literal[tuple(QUANTITIES)]  # type: ignore[valid-type]
    group: str
    expect: Literal["greater", "less", "equivalent", "consistent"]
    versus: str | None = None
    at: float | str | None = None
    versus_at: float | str | None = None  # compare with the quantity at this `at` instead (same group by default)
    margin: float | None = Field(default=None, gt=0.0, le=1e9)
    margin_why: OneLine | None = None  # why this margin, in one line (an equivalence's margin needs one)
    value: float | dict[float, float] | None = None
    figure: Name | None = None

    @model_validator(mode="after")
    def _keys_fit_relation_and_quantity(self) -> ClaimConfig:
        quantity = QUANTITIES[self.quantity]
        if (self.kind == "article" or self.quote is not None) and not re.match(ARTICLE_SOURCE, self.source):
            raise rule("source", "an article claim's (or a quote's) source names its article first: a1 ... a5")
        if (self.kind == "identity") != (self.checked_by is not None):
            raise rule("checked_by", "an identity (and only an identity) names the unit test that checks it")
        if self.kind == "article" and self.quote is None:
            raise rule("quote", "an article claim quotes the article's own words (quote: ..., in its language)")
        if self.versus_at is not None and (
            self.expect not in ("greater", "less", "equivalent") or self.value is not None
        ):
            raise rule(
                "versus_at", "versus_at compares two values of the runs: expect greater, less or equivalent, no value"
            )
        compares = self.versus is not None or self.versus_at is not None
        if self.expect == "equivalent" and (not compares or self.margin is None):
            raise rule(
                "margin" if compares else "versus",
                "expect: equivalent needs versus: VARIANT (or versus_at) and margin: M",
            )
        if self.expect in ("greater", "less") and compares == (self.value is not None):
            raise rule(
                "value" if self.value is not None else "versus",
                f"expect: {self.expect} compares with exactly one of versus: VARIANT (or versus_at) or value: NUMBER",
            )
        if self.expect == "consistent" and (self.value is None or self.versus is not None):
            raise rule(
                "value", "expect: consistent needs the article's value: NUMBER (or {at: value, ...}) and no versus"
            )
        if self.margin is not None and self.expect != "equivalent":
            raise rule(
                "margin", f"a margin is for expect: equivalent (this claim expects {self.expect}; compare with versus)"
            )
        if (self.margin is None) != (self.margin_why is None):
            raise rule("margin_why", "a margin (and only a margin) says why it is that wide: margin_why: ONE LINE")
        if isinstance(self.value, dict) and self.expect != "consistent":
            raise rule("value", "a mapping of values (one per `at`) is for expect: consistent only")
        if quantity.kind == "proportion" and self.expect not in ("greater", "less"):
            raise rule("expect", f"{self.quantity} is a proportion: expect greater or less")
        if quantity.kind == "proportion" and self.value is not None and not 0 <= self.value <= 1:
            raise rule("value", f"{self.quantity} is a proportion: value must be in [0, 1]")
        self._ats_fit(quantity.at)
        return self

    def _ats_fit(self, need: str) -> None:
        values = isinstance(self.value, dict)
        ats = list(self.value) if values else [self.at] + ([self.versus_at] if self.versus_at is not None else [])
        if values and self.at is not None:
            raise rule("at", "give `at` inside value's mapping ({at: article value}), not both")
        for at in ats:
            if need == "none" and at is not None:
                raise rule("at", f"{self.quantity} takes no `at`")
            if need == "number" and not isinstance(at, float):
                raise rule("at", f"{self.quantity} needs at: NUMBER (an epoch, step or threshold)")
            if need == "layer" and at is not None and not (isinstance(at, float) and at >= 1 and at == int(at)):
                raise rule(
                    "at", f"{self.quantity}: at is a layer number (1, 2, ...) or absent for the mean over layers"
                )
            if need == "count" and not (isinstance(at, float) and at >= 1 and at == int(at)):
                raise rule("at", f"{self.quantity} needs at: N, how many of the last evaluations (1, 2, ...)")
            if need == "mode":
                mode, _, size = str(at).partition("@")
                if mode not in EVAL_MODES or (size and not re.fullmatch(r"[0-9]{1,9}", size)):
                    raise rule("at", f"eval_mode_acc needs at: MODE or MODE@N, MODE one of {', '.join(EVAL_MODES)}")


class ExperimentConfig(Schema):
    name: Name
    dataset: DatasetConfig
    models: list[ModelConfig] = Field(min_length=1, max_length=100)
    optimizer: OptimizerConfig
    batch_size: int = Field(ge=1, le=65_536)
    seeds: list[Seed] = Field(min_length=1, max_length=1000)
    lr_multipliers: list[Multiplier] = Field(default=[1.0], min_length=1, max_length=100)
    # any config key path (as --set takes) -> values; every combination is a run, with its value in the name
    grid: dict[str, list[Any]] = {}
    # linear: lr x batch_size / lr_base_batch (Goyal et al.; the GroupNorm paper's 0.1 x B/32)
    lr_scaling: Literal["none", "linear"] = "none"
    lr_base_batch: int | None = Field(default=None, ge=1, le=65_536)
    epochs: int | None = Field(default=None, ge=1, le=100_000)
    steps: int | None = Field(default=None, ge=1, le=10**9)
    eval_every: int | None = Field(default=None, ge=1, le=10**9)  # steps; default: every epoch
    checkpoint_every: int | None = Field(default=None, ge=1, le=10**9)  # steps; default: evaluations
    eval_batch_size: int = Field(default=500, ge=1, le=100_000)  # 500-800 is fastest on CPU (cache)
    log_every: int = Field(default=50, ge=1, le=100_000)  # steps between training-loss records
    loss_ceiling: float | None = Field(default=None, gt=0.0, le=1e30)  # above = diverged
    thresholds: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default=[], max_length=100)
    eval_train_subset: int | None = Field(default=None, ge=1)  # also eval on N train images
    probes: ProbeConfig | None = None
    landscape_probe: LandscapeConfig | None = None
    ics_probe: IcsConfig | None = None
    weight_norms: bool = False  # per layer |W| and the last step's |dW|/|W| at every evaluation
    keep_final_weights: bool = False  # weights.pt at the end (for analyses; never committed)
    analyses: AnalysesConfig | None = None
    # data-parallel processes per run (torch.distributed; `bnexp run` starts them, or torchrun); batch_size
    # stays the global batch, each process trains on batch_size / processes of it
    processes: int = Field(default=1, ge=1, le=1024)
    # with several processes: batch statistics per process or synchronized across them
    bn_sync: Literal["local", "sync"] = "local"
    bn_running_stats: Literal["rank0", "reduce"] = "rank0"  # local BN: rank 0's running stats, or their mean
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    deterministic: bool = True  # deterministic algorithms (always on CPU; on CUDA it costs speed)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast convs/matmuls; BN statistics stay fp32
    compile: bool = False  # torch.compile the model; probe steps run eagerly
    description: str = ""
    reference: ReferenceConfig | None = None
    claims: list[ClaimConfig] = Field(default=[], max_length=200)
    # the day this experiment's first runs started, where they were replaced since (the committed runs' files
    # start later): claims registered after it are exploratory
    runs_began: Day | None = None
    # the seed counts at which the claims were looked at before more seeds were added (the report says what
    # those earlier looks cost; a number of seeds fixed in advance needs none)
    interim_looks: list[Annotated[int, Field(ge=1, le=UINT32)]] = Field(default=[], max_length=MAX_LOOKS)
    # how the verdicts of the experiment's article claims (one family) are decided: by Holm-adjusted p-values,
    # which keep the chance of any false verdict in the family at 5 %, or each by its own p
    multiplicity: Multiplicity = "holm"
    smoke: dict[str, Any] = {}  # `--smoke` applies these key-path overrides

    @model_validator(mode="after")
    def _fields_agree(self) -> ExperimentConfig:
        """Rules that involve several keys (and nothing outside the config)."""
        if (self.epochs is None) == (self.steps is None):
            raise rule("epochs", "give exactly one of epochs or steps", "epochs/steps")
        if self.steps is not None and self.eval_every is None:
            raise rule("steps", "step-based runs (steps:) need eval_every: N", "eval_every")
        if self.lr_scaling == "linear" and self.lr_base_batch is None:
            raise rule(
                "lr_scaling",
                "lr_scaling: linear needs lr_base_batch: B (the batch size at which the configured lr applies)",
                "lr_base_batch",
            )
        seen: dict[str, tuple[int, ModelConfig]] = {}
        for i, m in enumerate(self.models):
            # two entries may share a name only to add runs (other lr multipliers or seeds) of the same model
            same = m.model_copy(update={"lr_multipliers": None, "seeds": None})
            if m.tag in seen and seen[m.tag][1] != same:
                raise rule(
                    f"models[{i}]",
                    f"same run name {m.tag!r} as models[{seen[m.tag][0]}] but a different model; give one of them "
                    "a distinct label",
                )
            seen.setdefault(m.tag, (i, same))
        _no_duplicates(self, ("seeds", "lr_multipliers"))
        if self.processes > 1:
            self._processes_agree()
        if self.dataset.subset is not None and self.dataset.subset < self.batch_size:
            raise rule("dataset.subset", f"{self.dataset.subset} images cannot fill one batch of {self.batch_size}")
        return self

    def _processes_agree(self) -> None:
        n, batch, norms = self.processes, self.batch_size, {m.norm for m in self.models}
        if batch % n:
            raise rule(
                "batch_size", f"{batch} (the global batch) is not divisible by processes: {n}; use a multiple of {n}"
            )
        if norms & set(BATCH_NORMS) and batch // n < 2:
            raise rule(
                "batch_size",
                f"{batch} over {n} processes leaves {batch // n} image per process: batch statistics need at least 2",
            )
        if self.bn_sync == "sync" and not norms & set(BATCH_NORMS):
            raise rule(
                "bn_sync",
                "sync synchronizes batch statistics, and no model here has a batch norm "
                f"({', '.join(sorted(norms))}); use bn_sync: local",
            )
        unsynced = sorted(name for name in norms if NORMS[name].batch_statistics and NORMS[name].sync == "none")
        if self.bn_sync == "sync" and unsynced:
            allowed = ", ".join(
                f"{name} ({'any backend' if norm.sync == 'any' else 'CUDA'})"
                for name, norm in NORMS.items()
                if norm.sync != "none"
            )
            raise rule("bn_sync", f"sync is not available for {', '.join(unsynced)}; allowed with sync: {allowed}")
        if self.compile:
            raise rule("compile", "compile: true is for one process; set it to false with processes > 1")
        if self.landscape_probe or self.ics_probe:
            raise rule(
                "landscape_probe" if self.landscape_probe else "ics_probe",
                "the landscape and ICS probes measure one process's model; use processes: 1",
            )
