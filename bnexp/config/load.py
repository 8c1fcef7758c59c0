"""Loading a config: YAML text, its `smoke:` profile and `--set` overrides, validated by the schema as written and
in every cell of its grid, with errors that name the file, line and key."""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from bnexp.config.errors import ConfigError, Locate, join, translate
from bnexp.config.paths import grid_assignments, prefixes, set_path, split_path
from bnexp.config.plan import count_runs, expand_grid
from bnexp.config.reference import check_series
from bnexp.config.rules import check_claims, check_interim_looks, check_run_names
from bnexp.config.schema import ExperimentConfig
from bnexp.yamlio import YamlProblem, parse, parse_value

T = TypeVar("T")
Check = Callable[[ExperimentConfig, Locate], None]  # raises ConfigError
MAX_RUNS = 10_000  # a plan larger than this is refused unless --max-runs raises it
NOT_GRID_KEYS = (
    "grid",
    "seeds",
    "smoke",
    "name",
    "reference",
    "description",
    "claims",
    "interim_looks",
    "multiplicity",
    "runs_began",
)


class Source:
    """Where each key path came from, for error messages."""

    def __init__(self, file: str, lines: dict[str, int], overrides: dict[str, str] | None = None):
        self.file, self.lines, self.overrides = file, lines, overrides or {}

    def where(self, path: str) -> str:
        for p in prefixes(path):
            if p in self.overrides:
                return f"--set {self.overrides[p]}"
        for p in prefixes(path):
            if p in self.lines:
                return f"{self.file}:{self.lines[p]}"
        return self.file


@functools.cache
def _adapter(tp: Any) -> TypeAdapter:
    """One adapter per type: a grid's cells and every run record's model and dataset are validated by it."""
    return TypeAdapter(tp)


def validate(tp: type[T] | Any, data: Any, where: Locate) -> T:
    """`data` as `tp` (a config model, or e.g. list[ClaimConfig]), strictly: YAML's 1 is no string, "1" no number."""
    try:
        return _adapter(tp).validate_python(data, strict=True)
    except ValidationError as e:
        raise translate(e, tp, where, data) from None


def from_dict(tp: type[T] | Any, data: Any, source: str) -> T:
    """A config model (e.g. ModelConfig) from plain data recorded in a run store, validated as strictly as a YAML
    file; errors name `source`."""
    return validate(tp, data, lambda path: source)


def _node_lines(node: Any, path: str = "", out: dict[str, int] | None = None) -> dict[str, int]:
    import yaml  # the node classes only

    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            sub = join(path, str(k.value))
            out[sub] = k.start_mark.line + 1
            _node_lines(v, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _node_lines(v, join(path, i), out)
    return out


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
    return set_path(data, key.strip(), value, where)


def _read(path: Path) -> tuple[dict, Source]:
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
    return data, Source(str(path), _node_lines(node) if node else {})


def _apply_smoke(data: dict, src: Source) -> None:
    profile = data.get("smoke") or {}
    if not isinstance(profile, dict) or not profile:
        raise ConfigError(src.where("smoke"), "smoke", "--smoke needs a `smoke:` mapping of KEY.PATH: VALUE")
    for key, value in profile.items():
        line = src.lines.get(f"smoke.{key}", 0)
        overridden = set_path(data, str(key), copy.deepcopy(value), f"{src.file}:{line} (smoke)")
        # errors in what the smoke profile set are reported at its line
        for p in [p for p in src.lines if p == overridden or p.startswith((f"{overridden}.", f"{overridden}["))]:
            del src.lines[p]
        src.lines[overridden] = line


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
    data, src = _read(path)
    written = None  # the config as written, before smoke and --set: what claims name their groups in
    if smoke or overrides:
        with contextlib.suppress(ConfigError):  # its own errors are reported below, where they apply
            written = validate(ExperimentConfig, copy.deepcopy(data), src.where)
    if smoke:
        _apply_smoke(data, src)
    for assignment in overrides:
        src.overrides[_apply_override(data, assignment)] = assignment
    cfg = validate(ExperimentConfig, data, src.where)
    runs = count_runs(cfg)  # before anything is expanded: a huge plan is refused at once
    if runs > max_runs:
        raise ConfigError(
            src.where("grid" if cfg.grid else "seeds"),
            "grid/models/lr_multipliers/seeds",
            f"the plan has {runs:,} runs, more than the limit of {max_runs:,}; shrink it, or raise the "
            "limit with --max-runs N",
        )
    _check_cell(cfg, src.where, path.parent, checks)
    _check_grid(cfg, data, src, path.parent, checks)
    plans = expand_grid(cfg)
    check_run_names(plans, src.where)
    check_claims(written if written is not None else cfg, plans if written is None else expand_grid(written), src.where)
    check_interim_looks(written if written is not None else cfg, src.where)
    return cfg


def _check_cell(cfg: ExperimentConfig, where: Locate, config_dir: Path, checks: Sequence[Check]) -> None:
    """What the schema cannot see: the reference files, and `checks` (the models and data)."""
    check_series(cfg, where, config_dir)
    for check in checks:
        check(cfg, where)


def _check_grid(cfg: ExperimentConfig, data: dict, src: Source, config_dir: Path, checks: Sequence[Check]) -> None:
    """Each grid key, each of its values alone (an error names that value's line), then, with several keys, every
    combination as it will run: the rules that tie keys together (batch_size 2 with processes: 4) and `checks`
    (a BN model at batch 1), which bnexp.validate runs once per distinct setting of what they read, so a 20 x 20
    grid over lr and epochs builds its models once."""
    seen_keys: set[str] = set()
    for key, values in cfg.grid.items():
        p = join("grid", key)
        if not values:
            raise ConfigError(src.where(p), p, "expected a non-empty list of values")
        if len(values) > 1000:
            raise ConfigError(src.where(p), p, "at most 1000 values")
        keys = [k.strip() for k in key.split(",")]
        for k in keys:
            if not k or split_path(k)[0] in NOT_GRID_KEYS:
                raise ConfigError(src.where(p), p, f"{k!r} cannot be a grid key (use seeds: for seeds)")
            if k in seen_keys:
                raise ConfigError(src.where(p), p, f"{k!r} is varied twice in the grid; give each key once")
            seen_keys.add(k)
        for j, value in enumerate(values):
            if len(keys) > 1 and (not isinstance(value, list) or len(value) != len(keys)):
                raise ConfigError(
                    src.where(join(p, j)),
                    p,
                    f"value {value!r}: expected a list of {len(keys)} values, one for each of {', '.join(keys)}",
                )
            try:
                _check_assignments(
                    data,
                    grid_assignments(key, value),
                    f"{src.where(join(p, j))} (grid value {value!r})",
                    config_dir,
                    checks,
                )
            except ConfigError as e:
                raise ConfigError(
                    src.where(join(p, j)), p, f"value {value!r}: {e.key + ': ' if e.key else ''}{e.message}"
                ) from None
    if len(cfg.grid) < 2:  # each value passed alone above; rules that tie keys together must hold in every cell
        return
    for combo in itertools.product(*cfg.grid.values()):
        assignments = [pair for key, v in zip(cfg.grid, combo, strict=True) for pair in grid_assignments(key, v)]
        cell_text = ", ".join(f"{k}={v!r}" for k, v in assignments)
        try:
            _check_assignments(data, assignments, f"{src.where('grid')} (grid cell {cell_text})", config_dir, checks)
        except ConfigError as e:
            raise ConfigError(
                src.where("grid"), "grid", f"the cell {cell_text}: {e.key + ': ' if e.key else ''}{e.message}"
            ) from None


def _check_assignments(
    data: dict, assignments: list[tuple[str, Any]], where: str, config_dir: Path, checks: Sequence[Check]
) -> None:
    """The config with these grid values applied, checked as a config of its own."""
    cell = copy.deepcopy(data)
    cell["grid"] = {}
    for k, v in assignments:
        set_path(cell, k, copy.deepcopy(v), where)
    cell_cfg = validate(ExperimentConfig, cell, lambda path: where)
    _check_cell(cell_cfg, lambda path: where, config_dir, checks)
