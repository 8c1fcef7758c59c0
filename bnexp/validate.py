"""The checks of a config against the model registry and the datasets, so that a mistake stops the experiment
before anything is written, with the same file:line message as the schema's own errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from bnexp.config import (
    BATCH_NORMS,
    MAX_RUNS,
    AnalysesConfig,
    ConfigError,
    DatasetConfig,
    ExperimentConfig,
    Locate,
    ModelConfig,
    ProbeConfig,
    load_config,
)
from bnexp.data import SOURCES, model_inputs
from bnexp.models import MODELS, build_model
from bnexp.probes.distributions import probe_points


def load(
    path: str | Path, overrides: Sequence[str] = (), smoke: bool = False, max_runs: int = MAX_RUNS
) -> ExperimentConfig:
    """`bnexp.config.load_config` with every check below, for the config and each cell of its grid (once per
    distinct setting of what they read: a grid of 1,000 learning rates builds its models once)."""
    done: set[str] = set()
    read = {f.name for f in fields(Checked)}

    def check_once(cfg: ExperimentConfig, where: Locate) -> None:
        key = json.dumps(cfg.model_dump(include=read), sort_keys=True, default=str)
        if key not in done:
            check_against_models_and_data(Checked.of(cfg), where)
            done.add(key)

    return load_config(path, overrides, smoke, checks=[check_once], max_runs=max_runs)


@dataclass(frozen=True)
class Checked:
    """What the checks below read of a config, and all they are given: they run once per distinct value of it,
    and a check that read a field left out here raises AttributeError (a list of names beside the checks could
    fall behind them unseen, and a grid over that field would then be checked at one cell only)."""

    dataset: DatasetConfig
    models: list[ModelConfig]
    batch_size: int
    probes: ProbeConfig | None
    analyses: AnalysesConfig | None
    eval_train_subset: int | None

    @classmethod
    def of(cls, cfg: ExperimentConfig) -> Checked:
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})


def check_against_models_and_data(cfg: Checked, where: Locate) -> None:
    source = SOURCES[cfg.dataset.name]
    inputs = model_inputs(cfg.dataset)
    classes = inputs.num_classes
    for key, limit in zip(("subset", "test_subset"), source.sizes, strict=True):
        value = getattr(cfg.dataset, key)
        p = f"dataset.{key}"
        if value is not None and value > limit:
            raise ConfigError(where(p), p, f"{value} is larger than the {limit} images of {cfg.dataset.name}")
        if value is not None and value < classes:
            raise ConfigError(where(p), p, f"{value} images cannot hold one of each of the {classes} classes")
    train_size = cfg.dataset.subset or source.sizes[0]
    test_size = cfg.dataset.test_subset or source.sizes[1]
    if cfg.analyses and cfg.analyses.long_sequences is not None:
        other = sorted({m.name for m in cfg.models} - {"lstm"})
        if other:
            p = "analyses.long_sequences"
            raise ConfigError(
                where(p),
                p,
                f"reads taller images as longer sequences, which only a recurrent model "
                f"can (models: lstm); not {', '.join(other)}",
            )
    modes = cfg.analyses.eval_modes if cfg.analyses else None
    if modes is not None:  # every batch the analysis builds is drawn from the data, so the data bounds it
        p = "analyses.eval_modes"
        limits = [
            ("groups x group_size", modes.groups * modes.group_size, test_size, "test images"),
            ("group_size", modes.group_size, test_size // classes, "test images of one class"),
            ("largest batch_sizes", max(modes.batch_sizes), test_size, "test images"),
            (
                "largest reestimate_batches x batch_size",
                max(modes.reestimate_batches) * cfg.batch_size,
                10 * train_size,
                "training images (10 passes)",
            ),
        ]
        for what, value, limit, unit in limits:
            if value > limit:
                raise ConfigError(where(p), p, f"{what} is {value:,}, more than the {limit:,} {unit}")
    if cfg.eval_train_subset is not None and not classes <= cfg.eval_train_subset <= train_size:
        raise ConfigError(
            where("eval_train_subset"),
            "eval_train_subset",
            f"must be between {classes} and the {train_size} training images",
        )
    for i, m in enumerate(cfg.models):
        p = f"models[{i}]"
        if m.name not in MODELS:
            raise ConfigError(
                where(f"{p}.name"), f"{p}.name", f"unknown value {m.name!r}; allowed: {', '.join(sorted(MODELS))}"
            )
        try:
            model = build_model(m, inputs)
        except ValueError as e:
            raise ConfigError(where(p), p, str(e)) from None
        if m.norm in BATCH_NORMS and cfg.batch_size == 1:
            _check_one_image_trains(model, inputs, where, p, m.norm)
        if cfg.probes is not None:
            _check_probe_points(cfg, model, where, p)


def _check_one_image_trains(model: torch.nn.Module, inputs, where: Locate, p: str, norm: str) -> None:
    """Batch statistics of one image exist only where a norm sees more than one value per channel (conv maps)."""
    try:
        with torch.no_grad():
            model.train()(torch.zeros(1, inputs.channels, inputs.height, inputs.width))
    except ValueError:
        raise ConfigError(
            where("batch_size"),
            "batch_size",
            f"batch_size 1 cannot train {p} with {norm}: a "
            "normalized fc layer sees one value per channel (BatchNorm needs 2+ values per channel)",
        ) from None


def _check_probe_points(cfg: Checked, model: torch.nn.Module, where: Locate, p: str) -> None:
    points = probe_points(model)
    layers = cfg.probes.layers
    if isinstance(layers, list):
        bad = [i for i in layers if not -len(points) <= i < len(points)]
        if bad:
            raise ConfigError(
                where("probes.layers"),
                "probes.layers",
                f"{bad} out of range: {p} has "
                f"{len(points)} probe points (0..{len(points) - 1}, or negative from the output)",
            )
        chosen = [points[i] for i in layers]
    else:
        chosen = points if layers == "all" else points[-1:]
    widths = _activation_widths(model, [m for _, _, m in chosen], cfg)
    if widths and cfg.probes.unit >= min(widths):
        raise ConfigError(
            where("probes.unit"),
            "probes.unit",
            f"{cfg.probes.unit} is not a channel of every probed layer of {p} (the narrowest has {min(widths)})",
        )


def _activation_widths(model: torch.nn.Module, modules: list[torch.nn.Module], cfg: Checked) -> list[int]:
    widths: list[int] = []
    handles = [m.register_forward_pre_hook(lambda mod, args: widths.append(args[0].shape[1])) for m in modules]
    inputs = model_inputs(cfg.dataset)
    shape = (2, inputs.channels, inputs.height, inputs.width)
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(shape))
    finally:
        for h in handles:
            h.remove()
    return widths
