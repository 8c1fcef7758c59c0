"""What each record of a run's files must hold, checked where the files are read (`bnexp.results`): a results
folder may come from someone else, and a record with a wrong type or a missing field must skip its run with a
warning naming the file and line, never raise a traceback deep inside a plot or a report.

A spec maps a field to its kind: "int", "seed", "num" (int or float), "str", "list" (of numbers), "counts" (a histogram:
a non-empty list of non-negative numbers with a finite sum), "dict", "bool"; a trailing "?" allows null (or
absence). Fields not named are not checked (readers do not use them).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from bnexp.config import SAFE_NAME, DatasetConfig, ModelConfig, ReferenceConfig, from_dict
from bnexp.errors import BnexpError
from bnexp.store import CorruptFile

MAX_STEP = 10**9  # the config schema's own bound on steps

TRAIN = {"step": "int", "steps": "int", "epoch": "num", "loss": "num?"}
EVAL = {
    "step": "int",
    "epoch": "num",
    "test_acc": "num?",
    "test_loss": "num?",
    "train_acc": "num?",
    "dead_units": "num?",
}
PROBES = {
    "distribution": {
        "step": "int",
        "epoch": "num",
        "layer": "int",
        "n": "int",
        "mean": "num",
        "std": "num",
        "hist": "counts",
        "percentiles": "dict",
        "below_range": "int",
        "above_range": "int",
        "unit_percentiles": "dict?",
        "min": "num?",
        "max": "num?",
    },
    "landscape": {
        "step": "int",
        "etas": "list",
        "loss_min": "num",
        "loss_max": "num",
        "grad_predictiveness": "num",
        "beta_smoothness": "num",
    },
    "ics": {"step": "int", "layers": "list_any", "shift": "list", "cosine": "list"},
    "weights": {"step": "int", "layers": "list_any", "weight_norm": "list", "effective_step": "list"},
}
SUMMARY = {
    "status": "str",
    "seed": "seed?",
    "final_test_acc": "num?",
    "best_test_acc": "num?",
    "final_train_acc": "num?",
    "final_train_loss": "num?",
    "final_test_loss": "num?",
    "final_generalization_gap": "num?",
    "images_per_s": "num?",
    "train_time_s": "num?",
    "steps_per_epoch": "int?",
    "diverged_at_step": "int?",
    "final_dead_units": "num?",
    "time_to_threshold": "dict?",
    "num_classes": "int?",
    "model": "str?",
    "versions": "dict?",
    "device": "dict?",
    "segments": "list_any?",
}
# what a run computed on (bnexp.train.provenance); older runs lack cpu and cpu_capability
DEVICE = {
    "type": "str?",
    "name": "str?",
    "torch_threads": "int?",
    "cpu": "str?",
    "cpu_capability": "str?",
    "cuda": "str?",
    "cudnn": "int?",
}
VERSIONS = {"torch": "str?"}
SEGMENT = {"from_step": "int?", "torch_threads": "int?", "processes": "int?"}  # one per start or resume
# experiment.yaml and a run's config.yaml: the fields their readers use (plots, report, export, list)
EXPERIMENT_META = {"config": "dict", "runs": "list_any?", "data": "dict?"}
EXPERIMENT_CONFIG = {
    "name": "str",
    "seeds": "list?",
    "probes": "dict?",
    "dataset": "dict?",
    "reference": "dict?",
    "grid": "dict?",
    "claims": "list_any?",
    "interim_looks": "list_any?",
    "epochs": "int?",
    "steps": "int?",
    "log_every": "int?",
    "thresholds": "list?",
    "description": "str?",
    "analyses": "dict?",
}
PROBE_CONFIG = {"range": "list?", "percentiles": "list?", "at_epochs": "list?", "every_steps": "int?"}
RUN_CONFIG = {
    "model": "dict",
    "seed": "seed?",
    "lr": "num?",
    "lr_multiplier": "num?",
    "dataset": "dict?",
    "grid": "dict?",
    "batch_size": "int?",
}
# analyses whose result is one record (the others' results hold a list of rows, below)
ANALYSIS_FIELDS = {"step_cost": {"ratio_to_batchnorm": "num", "ratios": "list", "ms_per_step": "dict"}}
ANALYSIS_ROWS = {
    "eval_modes": ("rows", {"mode": "str", "test_acc": "num?", "batch_size": "int?", "batches": "int?"}),
    "scale_invariance": ("layers", {"without_eps": "list_any", "with_eps": "list_any"}),
    "long_sequences": ("rows", {"stretch": "int", "steps": "int", "test_acc": "num?"}),
}


def _ok(value: Any, kind: str) -> bool:
    if kind.endswith("?"):
        if value is None:
            return True
        kind = kind[:-1]
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_STEP
    if kind == "seed":  # the config's own bound on seeds, 2**32 - 1, above MAX_STEP
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2**32 - 1
    if kind == "num":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "list":
        return isinstance(value, list) and all(v is None or _ok(v, "num") for v in value)
    if kind == "list_any":
        return isinstance(value, list)
    if kind == "counts":  # a histogram: counts that sum to a finite number of values (figures and export divide by it)
        return (
            isinstance(value, list)
            and bool(value)
            and all(_ok(v, "num") and v >= 0 for v in value)
            and math.isfinite(sum(value))
        )
    return isinstance(value, {"str": str, "dict": dict, "bool": bool}[kind])


def check(record: Any, spec: dict[str, str], where: str) -> dict[str, Any]:
    """`record` if it is a mapping whose fields match `spec`; else CorruptFile naming `where` and the field."""
    if not isinstance(record, dict):
        raise CorruptFile(f"{where}: not a JSON object")
    for key, kind in spec.items():
        if key not in record and kind.endswith("?"):
            continue
        if key not in record:
            raise CorruptFile(f"{where}: missing field {key!r}")
        if not _ok(record[key], kind):
            raise CorruptFile(
                f"{where}: field {key!r} is {record[key]!r}, expected {kind.rstrip('?')}"
                + (" or null" if kind.endswith("?") else "")
            )
    return record


def check_metrics(path: Path, records: list[dict[str, Any]]) -> None:
    """Train and eval records, and the train windows contiguous (step − steps = the previous record's step):
    the per-step series built from them is then no longer than the data present."""
    previous = 0
    for i, r in enumerate(records, 1):
        where = f"{path}:{i}"
        if r.get("event") == "train":
            check(r, TRAIN, where)
            if r["steps"] < 1 or r["step"] - r["steps"] != previous:
                raise CorruptFile(
                    f"{where}: training window steps {r['step'] - r['steps'] + 1}..{r['step']} does "
                    f"not follow the previous one (ending at step {previous})"
                )
            previous = r["step"]
        elif r.get("event") == "eval":
            check(r, EVAL, where)


def check_probes(path: Path, records: list[dict[str, Any]]) -> None:
    for i, r in enumerate(records, 1):
        kind = r.get("probe", "distribution") if isinstance(r, dict) else None
        if kind not in PROBES:
            raise CorruptFile(f"{path}:{i}: unknown probe kind {kind!r}")
        check(r, PROBES[kind], f"{path}:{i}")
        if kind == "distribution" and (r["n"] < 1 or not r["percentiles"]):  # readers divide by n, index percentiles
            raise CorruptFile(f"{path}:{i}: a distribution of no values (n {r['n']}, percentiles {r['percentiles']})")


def check_experiment_meta(path: Path, meta: Any) -> None:
    """experiment.yaml as its readers use it: a config with a name, run names, the probes' range (a pair)."""
    check(meta, EXPERIMENT_META, str(path))
    config = check(meta["config"], EXPERIMENT_CONFIG, f"{path}: config")
    if not re.fullmatch(SAFE_NAME, config["name"]):  # it names folders, files and the README's table rows
        raise CorruptFile(f"{path}: config.name {config['name'][:80]!r} is not a plain name")
    if not all(isinstance(name, str) for name in meta.get("runs") or []):
        raise CorruptFile(f"{path}: runs holds something other than run names")
    if config.get("reference") is not None:
        _schema(ReferenceConfig, config["reference"], f"{path}: config.reference")
    probes = config.get("probes")
    if probes is not None:
        check(probes, PROBE_CONFIG, f"{path}: config.probes")
        if probes.get("range") is not None and (len(probes["range"]) != 2 or None in probes["range"]):
            raise CorruptFile(f"{path}: config.probes.range is not a pair of numbers")


def check_run_config(path: Path, config: Any) -> None:
    """A run's config.yaml: its model and dataset by the config's own schema (a model label of 5 or a dataset name
    that is a list broke the figures and the export)."""
    check(config, RUN_CONFIG, str(path))
    check(config["model"], {"name": "str", "norm": "str"}, f"{path}: model")  # resolved: readers use both
    _schema(ModelConfig, config["model"], f"{path}: model")
    if config.get("dataset") is not None:
        _schema(DatasetConfig, config["dataset"], f"{path}: dataset")


def _schema(cls: Any, value: Any, where: str) -> None:
    """`value` by a config dataclass's schema, as a damaged record (CorruptFile) where it does not fit."""
    try:
        from_dict(cls, value, where)
    except BnexpError as e:
        raise CorruptFile(str(e)) from None


def check_summary(path: Path, summary: dict[str, Any]) -> None:
    check(summary, SUMMARY, str(path))
    if summary.get("device") is not None:
        check(summary["device"], DEVICE, f"{path}: device")
    if summary.get("versions") is not None:
        check(summary["versions"], VERSIONS, f"{path}: versions")
    for i, segment in enumerate(summary.get("segments") or []):
        check(segment, SEGMENT, f"{path}: segments[{i}]")
    for key, hit in (summary.get("time_to_threshold") or {}).items():
        if hit is not None:
            check(hit, {"step": "int"}, f"{path}: time_to_threshold[{key!r}]")


def check_analysis(path: Path, name: str, record: Any) -> None:
    """An analysis file: {"result": {...}} with the rows its readers use."""
    check(record, {"result": "dict"}, str(path))
    if name in ANALYSIS_FIELDS:
        check(record["result"], ANALYSIS_FIELDS[name], f"{path}: result")
    if name in ANALYSIS_ROWS:
        key, spec = ANALYSIS_ROWS[name]
        rows = record["result"].get(key)
        if not isinstance(rows, list):
            raise CorruptFile(f"{path}: result.{key} is not a list")
        for j, row in enumerate(rows):
            check(row, spec, f"{path}: result.{key}[{j}]")
        if name == "eval_modes":
            gaps = record["result"].get("population_gap", [])
            if not isinstance(gaps, list):
                raise CorruptFile(f"{path}: result.population_gap is not a list")
            for j, g in enumerate(gaps):
                check(
                    g,
                    {"layer": "int", "mean_gap": "num?", "var_log_ratio": "num?"},
                    f"{path}: result.population_gap[{j}]",
                )


def check_series(path: Path, data: Any) -> dict[str, list[dict[str, Any]]]:
    """references.json: variant -> [{quantity, values (numbers), ...}]."""
    if not isinstance(data, dict):
        raise CorruptFile(f"{path}: not a mapping of variants to series")
    for variant, refs in data.items():
        if not isinstance(refs, list):
            raise CorruptFile(f"{path}: {variant!r} is not a list of series")
        for j, ref in enumerate(refs):
            check(
                ref,
                {"quantity": "str", "values": "list", "key": "str", "file": "str", "steps_per_epoch": "int?"},
                f"{path}: {variant}[{j}]",
            )
    return data
