"""Experiment configs: YAML -> typed, validated dataclasses, and the grid of runs they expand to.

Validation is strict and generic: every field of the dataclasses below declares its type (and, in its
metadata, a range or a dynamic set of choices); an unknown key, a wrong type or a bad value is a
`ConfigError` naming the file, the line, the key path and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from bnexp.errors import BnexpError

NormName = Literal["batchnorm", "torch_batchnorm", "naive_batchnorm", "none", "groupnorm", "layernorm", "instancenorm"]
NORMS: tuple[str, ...] = get_args(NormName)
# Short tags used in run names: lenet5-bn_lr1x_s0.
NORM_TAGS = {
    "batchnorm": "bn",
    "torch_batchnorm": "torchbn",
    "naive_batchnorm": "naivebn",
    "none": "",
    "groupnorm": "gn",
    "layernorm": "ln",
    "instancenorm": "in",
}
BATCH_NORMS = ("batchnorm", "torch_batchnorm", "naive_batchnorm")


class ConfigError(BnexpError):
    """A config problem, located: `where` is "file:line" or "--set key=value"."""

    def __init__(self, where: str, key: str, message: str):
        self.where, self.key, self.message = where, key, message
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


def _model_names() -> list[str]:
    from bnexp.models import MODELS  # late import: models import torch, configs must not need it to parse

    return sorted(MODELS)


def _range(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> dict:
    return {"lo": lo, "hi": hi, "lo_open": lo_open}


@dataclass(frozen=True)
class DatasetConfig:
    name: Literal["fashion_mnist", "mnist", "cifar100"]
    subset: int | None = field(default=None, metadata=_range(1))  # class-balanced train subset size
    test_subset: int | None = field(default=None, metadata=_range(1))  # class-balanced test subset size
    # standardize: (x/255 - mean)/std with the train split's statistics; unit: x/255 (torchvision ToTensor)
    normalize: Literal["standardize", "unit"] = "standardize"
    verify_checksums: bool = True  # md5 of the files against torchvision's list; off for your own files
    resize: int | None = field(default=None, metadata=_range(8))  # bilinear resize on the device, e.g. 224


@dataclass(frozen=True)
class ModelConfig:
    name: str = field(metadata={"choices": _model_names})
    norm: NormName = "batchnorm"
    activation: Literal["relu", "sigmoid"] = "relu"
    groups: int = field(default=2, metadata=_range(1))  # groupnorm only
    # torch's convention: running = (1 - m) * running + m * batch; null = cumulative average
    bn_momentum: float | None = field(default=0.1, metadata=_range(0.0, 1.0, lo_open=True))
    bn_eps: float = field(default=1e-5, metadata=_range(0.0, lo_open=True))
    affine: bool = True
    dropout: float = field(default=0.0, metadata=_range(0.0, 1.0))  # after hidden fc layers (alexnet)
    # N(0, init_std) weights and zero biases for every conv/fc layer; null = torch's default init
    init_std: float | None = field(default=None, metadata=_range(0.0, lo_open=True))
    # this model's own learning-rate multipliers, instead of the experiment's (e.g. BN-x30 without a no-BN x30)
    lr_multipliers: list[float] | None = field(default=None, metadata={"nonempty": True, **_range(0.0, lo_open=True)})
    label: str | None = None  # overrides the model part of run names

    @property
    def tag(self) -> str:
        if self.label:
            return self.label
        parts = [self.name, NORM_TAGS[self.norm], "sigmoid" if self.activation == "sigmoid" else ""]
        return "-".join(p for p in parts if p)


@dataclass(frozen=True)
class OptimizerConfig:
    name: Literal["sgd", "adam"]
    lr: float = field(metadata=_range(0.0, lo_open=True))
    momentum: float = field(default=0.0, metadata=_range(0.0, 1.0))  # sgd only
    weight_decay: float = field(default=0.0, metadata=_range(0.0))


@dataclass(frozen=True)
class ProbeConfig:
    """Distributions of pre-activation values (the input of each ReLU/Sigmoid, i.e. after the norm)."""

    at_epochs: list[int] = field(default_factory=list, metadata=_range(1))  # captured at each epoch's last step
    every_steps: int | None = field(default=None, metadata=_range(1))
    layers: Literal["all", "last"] | list[int] = "all"  # probe-point indices; negative counts from the output
    bins: int = field(default=60, metadata=_range(1))
    range: list[float] = field(default_factory=lambda: [-6.0, 6.0])  # histogram range
    percentiles: list[float] = field(default_factory=lambda: [15.0, 50.0, 85.0], metadata=_range(0.0, 100.0))
    unit: int = field(default=0, metadata=_range(0))  # channel whose own percentiles are also recorded


@dataclass(frozen=True)
class ReferenceConfig:
    """Figures reported by the articles, for `bnexp report`. Keys are variants: run names without the seed
    (e.g. lenet5-bn_lr1x); `final` values are compared with the summary key of the same name."""

    source: str
    note: str = ""
    test_acc_at_epoch: dict[str, dict[int, float]] = field(default_factory=dict)
    test_acc_at_step: dict[str, dict[int, float]] = field(default_factory=dict)
    final: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> {summary key: value}


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = field(metadata={"pattern": r"[A-Za-z0-9][A-Za-z0-9_.-]*"})
    dataset: DatasetConfig
    models: list[ModelConfig] = field(metadata={"nonempty": True})
    optimizer: OptimizerConfig
    batch_size: int = field(metadata=_range(1))
    seeds: list[int] = field(metadata={"nonempty": True})
    lr_multipliers: list[float] = field(
        default_factory=lambda: [1.0], metadata={"nonempty": True, **_range(0.0, lo_open=True)}
    )
    epochs: int | None = field(default=None, metadata=_range(1))
    steps: int | None = field(default=None, metadata=_range(1))
    eval_every: int | None = field(default=None, metadata=_range(1))  # steps; default: every epoch
    checkpoint_every: int | None = field(default=None, metadata=_range(1))  # steps; default: at evaluations
    eval_batch_size: int = field(default=500, metadata=_range(1))  # 500-800 is fastest on CPU (cache)
    log_every: int = field(default=50, metadata=_range(1))  # steps between training-loss records
    loss_ceiling: float | None = field(default=None, metadata=_range(0.0, lo_open=True))  # above = diverged
    thresholds: list[float] = field(default_factory=list, metadata=_range(0.0, 1.0))  # test acc milestones
    eval_train_subset: int | None = field(default=None, metadata=_range(1))  # also eval on N train images
    probes: ProbeConfig | None = None
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    deterministic: bool = True  # deterministic algorithms (always on CPU; on CUDA it costs speed)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast convs/matmuls; BN statistics stay fp32
    compile: bool = False  # torch.compile the model; probe steps run eagerly
    description: str = ""
    reference: ReferenceConfig | None = None
    smoke: dict[str, Any] = field(default_factory=dict)  # `--smoke` applies these key-path overrides


@dataclass(frozen=True)
class RunPlan:
    """One cell of the grid: a model at one learning rate with one seed."""

    name: str
    model: ModelConfig
    lr_multiplier: float
    seed: int
    experiment: ExperimentConfig

    @property
    def variant(self) -> str:
        return variant_name(self.model, self.lr_multiplier)

    @property
    def lr(self) -> float:
        return self.experiment.optimizer.lr * self.lr_multiplier

    def resolved(self) -> dict[str, Any]:
        """Everything that determines this run, as plain data (written to the run's config.yaml)."""
        exp = dataclasses.asdict(self.experiment)
        exp.pop("models"), exp.pop("seeds"), exp.pop("lr_multipliers")
        return {
            "run": self.name,
            "model": dataclasses.asdict(self.model),
            "lr_multiplier": self.lr_multiplier,
            "lr": self.lr,
            "seed": self.seed,
            **exp,
        }


def expand_grid(cfg: ExperimentConfig) -> list[RunPlan]:
    """models x lr multipliers x seeds, in that nesting order, with stable readable names."""
    return [
        RunPlan(f"{variant_name(m, mult)}_s{seed}", m, mult, seed, cfg)
        for m in cfg.models
        for mult in (m.lr_multipliers or cfg.lr_multipliers)
        for seed in cfg.seeds
    ]


def variant_name(model: ModelConfig, lr_multiplier: float) -> str:
    """A run's name without its seed: what seeds are averaged over (e.g. lenet5-bn_lr1x)."""
    return f"{model.tag}_lr{lr_multiplier:g}x"


# --------------------------------------------------------------------------------------------------------
# Loading: YAML text (+ --set overrides) -> ExperimentConfig


class _Source:
    """Where each key path came from, for error messages."""

    def __init__(self, file: str, lines: dict[str, int], overrides: dict[str, str]):
        self.file, self.lines, self.overrides = file, lines, overrides

    def where(self, path: str) -> str:
        for p in _prefixes(path):
            if p in self.overrides:
                return f"--set {self.overrides[p]}"
        for p in _prefixes(path):
            if p in self.lines:
                return f"{self.file}:{self.lines[p]}"
        return self.file


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


def _node_lines(node: yaml.Node, path: str = "", out: dict[str, int] | None = None) -> dict[str, int]:
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            sub = _join(path, k.value)
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
    def fail(msg: str) -> None:
        raise ConfigError(src.where(path), path, msg)

    if meta.get("nonempty") and isinstance(value, list) and not value:
        fail("must not be empty")
    if "choices" in meta:
        choices = meta["choices"]()
        if value not in choices:
            fail(f"unknown value {value!r}; allowed: {', '.join(choices)}")
    if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
        fail(f"{value!r} must match {meta['pattern']} (letters, digits, '_', '.', '-')")
    lo, hi = meta.get("lo"), meta.get("hi")
    for i, v in enumerate(value if isinstance(value, list) else [value]):
        p = _join(path, i) if isinstance(value, list) else path
        if v is None or (lo is None and hi is None):
            continue
        if lo is not None and (v <= lo if meta["lo_open"] else v < lo):
            raise ConfigError(src.where(p), p, f"must be {'>' if meta['lo_open'] else '>='} {lo:g} (got {v})")
        if hi is not None and v > hi:
            raise ConfigError(src.where(p), p, f"must be <= {hi:g} (got {v})")


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


def _apply_override(data: dict, assignment: str) -> str:
    """Apply one `KEY.PATH=VALUE` (value parsed as YAML) to `data`; returns the normalized key path."""
    key, sep, raw = assignment.partition("=")
    where = f"--set {assignment}"
    if not sep or not key.strip():
        raise ConfigError(where, "", "expected KEY.PATH=VALUE, e.g. --set optimizer.lr=0.01")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(where, key, f"value is not valid YAML: {e}") from None
    return _set_path(data, key.strip(), value, where)


def _set_path(data: dict, key: str, value: Any, where: str) -> str:
    """Set `data[a][b][0]...` for the key path 'a.b[0]' (or 'a.b.0'); returns the normalized path."""
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in re.split(r"\.|\[(\d+)\]\.?", key) if p]
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
            if isinstance(node, dict) and part not in node:
                node[part] = {}
            node = node[part]
    return path


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (), smoke: bool = False) -> ExperimentConfig:
    """Read a YAML experiment config, apply its `smoke:` overrides if asked, then `--set` overrides (later
    wins), and validate it strictly."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(str(path), "", "config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), "", f"cannot read config: {e}") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(where, "", f"YAML syntax error: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", "expected a mapping of config keys at the top level")
    src = _Source(str(path), _node_lines(node) if node else {}, {})
    if smoke:
        profile = data.get("smoke") or {}
        if not isinstance(profile, dict) or not profile:
            raise ConfigError(src.where("smoke"), "smoke", "--smoke needs a `smoke:` mapping of KEY.PATH: VALUE")
        for key, value in profile.items():
            line = src.lines.get(f"smoke.{key}", 0)
            overridden = _set_path(data, str(key), value, f"{path}:{line} (smoke)")
            # errors in what the smoke profile set are reported at its line
            for p in [p for p in src.lines if p == overridden or p.startswith((f"{overridden}.", f"{overridden}["))]:
                del src.lines[p]
            src.lines[overridden] = line
    for assignment in overrides:
        src.overrides[_apply_override(data, assignment)] = assignment
    cfg = _build(ExperimentConfig, data, "", src)
    _check_experiment(cfg, src)
    return cfg


def _check_experiment(cfg: ExperimentConfig, src: _Source) -> None:
    """Rules that involve several keys."""
    if (cfg.epochs is None) == (cfg.steps is None):
        raise ConfigError(src.where("epochs"), "epochs/steps", "give exactly one of epochs or steps")
    if cfg.steps is not None and cfg.eval_every is None:
        raise ConfigError(src.where("steps"), "eval_every", "step-based runs (steps:) need eval_every: N")
    for i, m in enumerate(cfg.models):
        if m.norm in BATCH_NORMS and cfg.batch_size < 2:
            raise ConfigError(
                src.where("batch_size"),
                "batch_size",
                f"batch_size 1 cannot train with {m.norm} (models[{i}]): BatchNorm needs 2+ values per channel",
            )
    seen: dict[str, int] = {}
    for i, m in enumerate(cfg.models):
        if m.tag in seen:
            p = f"models[{i}]"
            raise ConfigError(
                src.where(p),
                p,
                f"same run name {m.tag!r} as models[{seen[m.tag]}]; give one of them a distinct label:",
            )
        seen[m.tag] = i
    _check_against_data_and_models(cfg, src)
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(src.where("seeds"), "seeds", f"duplicate seeds in {cfg.seeds}")
    for i, m in enumerate(cfg.models):
        if m.lr_multipliers and len(set(m.lr_multipliers)) != len(m.lr_multipliers):
            p = f"models[{i}].lr_multipliers"
            raise ConfigError(src.where(p), p, f"duplicates in {m.lr_multipliers}")
    if len(set(cfg.lr_multipliers)) != len(cfg.lr_multipliers):
        raise ConfigError(src.where("lr_multipliers"), "lr_multipliers", f"duplicates in {cfg.lr_multipliers}")


def _check_against_data_and_models(cfg: ExperimentConfig, src: _Source) -> None:
    """Subset sizes against the official splits, and every model actually built once (e.g. groups that do
    not divide a layer's channels), so that such mistakes stop the experiment before anything is written."""
    from bnexp.data import SOURCES  # late import: torch
    from bnexp.models import build_model

    source = SOURCES[cfg.dataset.name]
    size = cfg.dataset.resize
    inputs = dataclasses.replace(source.inputs, height=size, width=size) if size else source.inputs
    for key, limit in zip(("subset", "test_subset"), source.sizes, strict=True):
        value = getattr(cfg.dataset, key)
        if value is not None and value > limit:
            p = f"dataset.{key}"
            raise ConfigError(src.where(p), p, f"{value} is larger than the {limit} images of {cfg.dataset.name}")
    for i, m in enumerate(cfg.models):
        try:
            build_model(m, inputs)
        except ValueError as e:
            raise ConfigError(src.where(f"models[{i}]"), f"models[{i}]", str(e)) from None
