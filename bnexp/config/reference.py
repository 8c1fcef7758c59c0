"""Curves published with the articles (`reference.series` of a config): read from JSON files inside the config's
folder tree, which no path from a config may leave."""

from __future__ import annotations

import json
import math
import typing
from pathlib import Path
from typing import Any

from bnexp.config.errors import ConfigError, Locate
from bnexp.config.schema import ExperimentConfig, SeriesRef
from bnexp.errors import BnexpError
from bnexp.store import parse_json, read_regular


def check_series(cfg: ExperimentConfig, where: Locate, config_dir: Path) -> None:
    """Every reference series the config names can be read."""
    if cfg.reference is not None:
        for variant, refs in cfg.reference.series.items():
            for j, ref in enumerate(refs):
                p = f"reference.series.{variant}[{j}]"
                load_series(config_dir, ref, where(p), p)


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
