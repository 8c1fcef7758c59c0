"""Experiment configs: YAML -> validated pydantic models, and the plan of runs they expand to.

The bottom layer: it imports no models, data or layers. `schema` declares every key (type, range, pattern, and the
rules that tie keys together), `errors` turns pydantic's errors into bnexp's (file, line, key path, allowed values),
`load` reads YAML with its smoke profile and --set overrides and checks every grid cell, `plan` expands a config
into named runs, `rules` checks the plan as a whole, `norms` and `quantities` are the tables of what a config may
name. Checks that need the model registry or the datasets are passed in by the caller (`bnexp.validate`).
"""

from bnexp.config.datasets import DATASET_CLASSES
from bnexp.config.errors import ConfigError, Locate
from bnexp.config.load import MAX_RUNS, Check, from_dict, load_config
from bnexp.config.norms import BATCH_NORMS, NORMS, WEIGHT_NORMS
from bnexp.config.plan import (
    NOT_COMPARED,
    RunPlan,
    config_diff,
    expand_grid,
)
from bnexp.config.quantities import QUANTITIES
from bnexp.config.reference import load_series
from bnexp.config.rules import interim_looks_fit
from bnexp.config.schema import (
    SAFE_NAME,
    AnalysesConfig,
    ClaimConfig,
    DatasetConfig,
    EvalModesConfig,
    ExperimentConfig,
    IcsConfig,
    LandscapeConfig,
    LongSequencesConfig,
    ModelConfig,
    NoiseConfig,
    OptimizerConfig,
    ProbeConfig,
    ReferenceConfig,
    RenormConfig,
    SeriesRef,
)

__all__ = [
    "BATCH_NORMS",
    "DATASET_CLASSES",
    "MAX_RUNS",
    "NORMS",
    "NOT_COMPARED",
    "QUANTITIES",
    "SAFE_NAME",
    "WEIGHT_NORMS",
    "AnalysesConfig",
    "Check",
    "ClaimConfig",
    "ConfigError",
    "DatasetConfig",
    "EvalModesConfig",
    "ExperimentConfig",
    "IcsConfig",
    "LandscapeConfig",
    "Locate",
    "LongSequencesConfig",
    "ModelConfig",
    "NoiseConfig",
    "OptimizerConfig",
    "ProbeConfig",
    "ReferenceConfig",
    "RenormConfig",
    "RunPlan",
    "SeriesRef",
    "config_diff",
    "expand_grid",
    "from_dict",
    "interim_looks_fit",
    "load_config",
    "load_series",
]
