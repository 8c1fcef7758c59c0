"""Rules about a config's plan as a whole, which no single model of the schema can check: distinct run names, claims
that name variants of the plan, earlier looks that fit the seeds."""

from __future__ import annotations

import difflib

from bnexp.config.errors import ConfigError, Locate
from bnexp.config.plan import RunPlan
from bnexp.config.schema import MAX_LOOKS, ExperimentConfig

MAX_RUN_NAME = 160


def check_run_names(plans: list[RunPlan], where: Locate) -> None:
    seen: dict[str, str] = {}
    for plan in plans:
        if len(plan.name) > MAX_RUN_NAME:
            raise ConfigError(
                where("models"),
                "models",
                f"run name {plan.name[:60]!r}... is longer than {MAX_RUN_NAME} characters; give the model a shorter "
                "label",
            )
        if plan.name in seen:
            raise ConfigError(
                where("lr_multipliers"),
                "lr_multipliers/grid",
                f"two runs would share the name {plan.name!r} ({seen[plan.name]} and {_cell_text(plan)}); make the "
                "values distinct in their first 6 significant digits",
            )
        seen[plan.name] = _cell_text(plan)


def _cell_text(plan: RunPlan) -> str:
    return ", ".join([f"lr multiplier {plan.lr_multiplier!r}", *(f"{k}={v!r}" for k, v in plan.grid)])


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


def check_claims(cfg: ExperimentConfig, plans: list[RunPlan], where: Locate) -> None:
    """Claims have distinct ids and name variants of `plans`, the config's as written (a smoke profile or --set may
    leave some without runs: the report then says not measured). Each claim's own keys are checked by its schema."""
    variants = list(dict.fromkeys(p.variant for p in plans))
    seen: set[str] = set()
    for i, c in enumerate(cfg.claims):
        p = f"claims[{i}]"
        if c.id in seen:
            raise ConfigError(
                where(f"{p}.id"), f"{p}.id", f"{c.id!r} is the id of an earlier claim; ids must be unique"
            )
        seen.add(c.id)
        for key in ("group", "versus"):
            name = getattr(c, key)
            if name is not None and name not in variants:
                close = difflib.get_close_matches(name, variants, n=3)
                raise ConfigError(
                    where(f"{p}.{key}"),
                    f"{p}.{key}",
                    f"{name!r} is not a variant of this experiment; "
                    + (f"did you mean {', '.join(map(repr, close))}? " if close else "")
                    + f"its variants: {', '.join(variants[:12])}"
                    + (" ..." if len(variants) > 12 else ""),
                )
