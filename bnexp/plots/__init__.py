"""Figures from the run store. One table, `registry.FIGURES`, maps what an experiment recorded to the figures it
gets; the drawing lives in one module per family of figures (curves, probes, landscape, sweeps, analyses), on
the shared `style`, `selection` and `drawing`. Figures draw finished runs only (completed or diverged): an
interrupted or running run is left out of every figure, which says so."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, also on headless machines; before any module imports pyplot

from bnexp.plots.registry import FIGURES, FigureKind, render, render_claims
from bnexp.plots.style import NORM_COLORS, NORM_LABELS

__all__ = ["FIGURES", "NORM_COLORS", "NORM_LABELS", "FigureKind", "render", "render_claims"]
