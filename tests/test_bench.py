"""The benchmark's code path runs (a smoke check, not a timing: benchmarks are never timed in tests)."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from bnexp.cli import app

from .conftest import SHARED_DATA


@pytest.mark.skipif(
    not SHARED_DATA.is_dir() and not os.environ.get("BNEXP_REQUIRE_REAL_DATA"),
    reason="the official files are not beside this checkout (CI sets BNEXP_REQUIRE_REAL_DATA)",
)
def test_bench_runs_every_section():
    result = CliRunner().invoke(
        app, ["bench", "--data-root", str(SHARED_DATA), "--reps", "1", "--steps", "10", "--no-time-to-accuracy"]
    )
    assert result.exit_code == 0, result.output
    for section in ("1 articles' loop", "2 bnexp trainer", "3 bare loop", "ratio bnexp / articles' loop",
                    "bnexp evaluate, batch 5000", "alexnet_small-bn", "mlp-bn", "--jobs 2"):  # fmt: skip
        assert section in result.stdout, section


def test_bench_rejects_an_unknown_device():
    result = CliRunner().invoke(app, ["bench", "--device", "tpu"])
    assert result.exit_code == 2 and "unknown device 'tpu'" in result.stderr
