"""What each record of a run's files must hold, checked where the files are read (`bnexp.results`): a results
folder may come from someone else, and a record with a wrong type or a missing field must skip its run with a
warning naming the file and line, never raise a traceback deep inside a plot or a report.

Each kind of record is a pydantic model below, declared once: the trainer's summary is built through `Summary` before
it is written, and readers may lack only what a model gives a default. The readers get the models (`read_*`)
and read their fields by attribute: a misspelt name raises AttributeError, and a field a record may lack is
`X | None = None`, its None handled where it is read. Fields not declared are kept but not checked (readers do not
use them).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, ValidationError, model_validator

from bnexp.config import SAFE_NAME, DatasetConfig, ModelConfig, ReferenceConfig, from_dict
from bnexp.errors import BnexpError
from bnexp.store import CorruptFile

MAX_STEP = 10**9  # the config schema's own bound on steps

Int = Annotated[int, Field(ge=-MAX_STEP, le=MAX_STEP)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # the config's own bound on seeds, above MAX_STEP


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value  # as recorded: a float field would turn a recorded 0 into 0.0, which export and list would print


Number = Annotated[int | float, PlainValidator(_number)]
Numbers = list[Number | None]  # a series with gaps (a layer without a value)


def _counts(values: list[float]) -> list[float]:
    if not math.isfinite(sum(values)):  # figures and export divide by the number of values
        raise ValueError("the counts do not sum to a finite number")
    return values


R = TypeVar("R", bound="Record")
# a histogram: counts of values, at least one bin, none negative, a finite total
Counts = Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1), AfterValidator(_counts)]


class Record(BaseModel):
    """A record of a run's files as its readers use it: the fields named are checked (strict types, finite
    numbers); other fields are kept unchecked (readers do not use them)."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)


class TrainRecord(Record):
    step: Int
    steps: Int
    epoch: Number
    loss: Number | None = None


class EvalRecord(Record):
    """An evaluation, its fields in the order the trainer writes them (bnexp.training.evaluate): the export lists
    a record's numbers in this order. A run evaluates on training images only with eval_train_subset, and counts
    dead units only where its net has ReLUs."""

    step: Int
    epoch: Number
    test_loss: Number | None = None
    test_acc: Number | None = None
    train_loss: Number | None = None
    train_acc: Number | None = None
    dead_units: Number | None = None
    dead_units_per_layer: Numbers | None = None


class DistributionProbe(Record):
    step: Int
    epoch: Number
    layer: Int
    n: Int
    mean: Number
    std: Number
    hist: Counts
    percentiles: dict
    below_range: Int
    above_range: Int
    unit: Int | None = None  # the unit whose percentiles unit_percentiles holds (older runs lack both)
    unit_percentiles: dict | None = None
    min: Number | None = None
    max: Number | None = None

    @model_validator(mode="after")
    def _has_values(self) -> DistributionProbe:
        if self.n < 1 or not self.percentiles:  # readers divide by n and index the percentiles
            raise ValueError(f"a distribution of no values (n {self.n}, percentiles {self.percentiles})")
        return self


class LandscapeProbe(Record):
    step: Int
    etas: Numbers
    loss_min: Number
    loss_max: Number
    grad_predictiveness: Number
    beta_smoothness: Number


class IcsProbe(Record):
    step: Int
    layers: list[Any]
    shift: Numbers
    cosine: Numbers


class WeightsProbe(Record):
    step: Int
    layers: list[Any]
    weight_norm: Numbers
    effective_step: Numbers


PROBES: dict[str, type[Record]] = {
    "distribution": DistributionProbe,
    "landscape": LandscapeProbe,
    "ics": IcsProbe,
    "weights": WeightsProbe,
}


class Device(Record):
    """What a run computed on (bnexp.training.summary.provenance); older runs lack cpu and cpu_capability."""

    type: str | None = None
    name: str | None = None
    torch_threads: Int | None = None
    cpu: str | None = None
    cpu_capability: str | None = None
    cuda: str | None = None
    cudnn: Int | None = None


class Versions(Record):
    torch: str | None = None


class Segment(Record):
    """One start or resume of a run."""

    from_step: Int | None = None
    torch_threads: Int | None = None
    processes: Int | None = None


class ThresholdHit(Record):
    step: Int


class Summary(Record):
    """summary.json, written by the trainer through this model (bnexp.training.summary) and read back by it."""

    status: str
    seed: Seed | None = None
    steps: Int | None = None
    epochs: Number | None = None
    final_test_acc: Number | None = None
    best_test_acc: Number | None = None
    final_train_acc: Number | None = None
    final_train_loss: Number | None = None
    final_test_loss: Number | None = None
    final_generalization_gap: Number | None = None
    images_per_s: Number | None = None
    train_time_s: Number | None = None
    eval_time_s: Number | None = None
    steps_per_epoch: Int | None = None
    diverged_at_step: Int | None = None
    final_dead_units: Number | None = None
    time_to_threshold: dict[str, ThresholdHit | None] | None = None
    num_classes: Int | None = None
    model: str | None = None
    versions: Versions | None = None
    device: Device | None = None
    segments: list[Segment] | None = None
    error: str | None = None  # why a run failed
    started: str | None = None  # when the run started (its last start or resume; ISO 8601, UTC)


class ProbeSettings(Record):
    range: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None
    percentiles: Numbers | None = None
    at_epochs: Numbers | None = None
    every_steps: Int | None = None


class ExperimentConfigRecord(Record):
    """experiment.yaml's config: what its readers use (plots, report, export, list)."""

    name: Annotated[str, Field(pattern=f"^{SAFE_NAME}$")]  # it names folders, files and the README's table rows
    seeds: Numbers | None = None
    probes: ProbeSettings | None = None
    dataset: dict | None = None
    reference: dict | None = None
    grid: dict | None = None
    claims: list[Any] | None = None
    interim_looks: list[Any] | None = None
    multiplicity: Literal["holm", "none"] | None = None
    epochs: Int | None = None
    steps: Int | None = None
    log_every: Int | None = None
    thresholds: Numbers | None = None
    description: str | None = None
    analyses: dict | None = None


class ExperimentMeta(Record):
    config: ExperimentConfigRecord
    runs: list[str] | None = None
    data: dict | None = None


class RunModel(Record):
    name: str  # resolved: readers use both
    norm: str


class RunConfig(Record):
    model: RunModel
    seed: Seed | None = None
    lr: Number | None = None
    lr_multiplier: Number | None = None
    dataset: dict | None = None
    grid: dict | None = None
    batch_size: Int | None = None


class StepCost(Record):
    ratio_to_batchnorm: Number
    ratios: Numbers
    ms_per_step: dict


class EvalModeRow(Record):
    mode: str
    test_acc: Number | None = None
    batch_size: Int | None = None
    batches: Int | None = None


class PopulationGap(Record):
    layer: Int
    mean_gap: Number | None = None
    var_log_ratio: Number | None = None


class EvalModes(Record):
    rows: list[EvalModeRow]
    population_gap: list[PopulationGap] = []


class ScaleRow(Record):
    """BN's output and gradient with the weights before it scaled by `a` (null where not finite)."""

    a: Number
    output_rel_error: Number | None
    grad_ratio: Number | None


class ScaleInvarianceLayer(Record):
    eps: Number
    without_eps: list[ScaleRow]
    with_eps: list[ScaleRow]


class ScaleInvariance(Record):
    scales: list[Number]
    layers: list[ScaleInvarianceLayer]
    has_batchnorm: bool | None = None  # older results lack it


class LongSequenceRow(Record):
    stretch: Int
    steps: Int
    test_acc: Number | None = None


class LongSequences(Record):
    rows: list[LongSequenceRow]


# an analysis file holds {"result": ...}; the result of these, as their readers use it
ANALYSES: dict[str, type[Record]] = {
    "step_cost": StepCost,
    "eval_modes": EvalModes,
    "scale_invariance": ScaleInvariance,
    "long_sequences": LongSequences,
}


class AnalysisFile(Record):
    """<run>/analyses/<name>.json: the result, and what it was computed with (bnexp.analyses)."""

    result: dict
    settings: Any = None  # the analysis' settings; null for older files
    weights_sha256: str | None = None  # the final weights it read; null for older files


class SeriesRecord(Record):
    quantity: str
    values: Numbers
    key: str
    file: str
    steps_per_epoch: Int | None = None


def check(record: Any, model: type[Record], where: str) -> dict[str, Any]:
    """`record` if it is a mapping whose fields fit `model`; else CorruptFile naming `where` and the field."""
    read(record, model, where)
    return record


def read(record: Any, model: type[R], where: str) -> R:
    """`record` as a `model`; CorruptFile naming `where` and the field where it does not fit."""
    if not isinstance(record, dict):
        raise CorruptFile(f"{where}: not a JSON object")
    try:
        return model.model_validate(record)
    except ValidationError as e:
        error = e.errors(include_url=False)[0]
        loc = error["loc"]
        if not loc:  # a rule of the whole record
            raise CorruptFile(f"{where}: {error['ctx']['error'] if 'ctx' in error else error['msg']}") from None
        field = f"field {loc[0]!r}" + (f" ({_path(loc)})" if len(loc) > 1 else "")
        if error["type"] == "missing":
            raise CorruptFile(f"{where}: missing {field}") from None
        why = error["ctx"]["error"] if error["type"] == "value_error" else error["msg"]
        raise CorruptFile(f"{where}: {field} is {error['input']!r}: {why}") from None


def _path(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def read_metrics(path: Path, records: list[dict[str, Any]]) -> tuple[list[TrainRecord], list[EvalRecord]]:
    """The train and eval records of a run's log, the train windows contiguous (step − steps = the previous
    record's step): the per-step series built from them is then no longer than the data present. Other events
    (a divergence's last losses) are left out: no reader uses them."""
    train, evals, previous = [], [], 0
    for i, r in enumerate(records, 1):
        where = f"{path}:{i}"
        if r.get("event") == "train":
            record = read(r, TrainRecord, where)
            if record.steps < 1 or record.step - record.steps != previous:
                raise CorruptFile(
                    f"{where}: training window steps {record.step - record.steps + 1}..{record.step} does "
                    f"not follow the previous one (ending at step {previous})"
                )
            previous = record.step
            train.append(record)
        elif r.get("event") == "eval":
            evals.append(read(r, EvalRecord, where))
    return train, evals


def read_probes(path: Path, records: list[dict[str, Any]]) -> list[Record]:
    """probes.jsonl's records, each as the model of its kind (`PROBES`; a record without a kind is a
    distribution)."""
    out = []
    for i, r in enumerate(records, 1):
        kind = r.get("probe", "distribution") if isinstance(r, dict) else None
        if kind not in PROBES:
            raise CorruptFile(f"{path}:{i}: unknown probe kind {kind!r}")
        out.append(read(r, PROBES[kind], f"{path}:{i}"))
    return out


def check_experiment_meta(path: Path, meta: Any) -> None:
    """experiment.yaml as its readers use it: a config with a plain name, run names, the probes' range (a pair),
    the reference by the config's own schema."""
    check(meta, ExperimentMeta, str(path))
    if meta["config"].get("reference") is not None:
        _schema(ReferenceConfig, meta["config"]["reference"], f"{path}: config.reference")


def check_run_config(path: Path, config: Any) -> None:
    """A run's config.yaml: its model and dataset by the config's own schema (a model label of 5 or a dataset name
    that is a list broke the figures and the export)."""
    check(config, RunConfig, str(path))
    _schema(ModelConfig, config["model"], f"{path}: model")
    if config.get("dataset") is not None:
        _schema(DatasetConfig, config["dataset"], f"{path}: dataset")


def _schema(cls: Any, value: Any, where: str) -> None:
    """`value` by a config model's schema, as a damaged record (CorruptFile) where it does not fit."""
    try:
        from_dict(cls, value, where)
    except BnexpError as e:
        raise CorruptFile(str(e)) from None


def read_analysis(path: Path, name: str, record: Any) -> Record:
    """An analysis file's result ({"result": {...}}): as its model (`ANALYSES`) with the fields and rows its
    readers use; an analysis no model declares (a newer bnexp's) as a plain record."""
    file = read(record, AnalysisFile, str(path))
    return read(file.result, ANALYSES.get(name, Record), f"{path}: result")


def read_series(path: Path, data: Any) -> dict[str, list[SeriesRecord]]:
    """references.json: variant -> [{quantity, values (numbers), ...}]."""
    if not isinstance(data, dict):
        raise CorruptFile(f"{path}: not a mapping of variants to series")
    out = {}
    for variant, refs in data.items():
        if not isinstance(refs, list):
            raise CorruptFile(f"{path}: {variant!r} is not a list of series")
        out[variant] = [read(ref, SeriesRecord, f"{path}: {variant}[{j}]") for j, ref in enumerate(refs)]
    return out
