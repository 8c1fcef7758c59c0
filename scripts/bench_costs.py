"""What the new capabilities cost, measured side by side in one run (medians of alternating repetitions):

* probes: training time of LeNet5-BN with each probe on, against the same run without probes;
* data parallelism: training images/s of LeNet5-BN with 1 process, 2 processes with local BN and 2 processes
  with synchronized BN (gloo on CPU), same global batch.

    python scripts/bench_costs.py --data-root ../shared/data            # ~20 minutes on 2 cores
    python scripts/bench_costs.py --data-root ../shared/data --only processes --reps 3

Times come from the runs' own timing.jsonl (training intervals only: no evaluation, checkpoint or process
start-up). Between separate runs this shared machine's noise is ~10 %; the last column, the time each run itself
spent in its probes over its training time, is measured inside one run and is the precise figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bnexp.runner import run_experiment
from bnexp.train import Silent
from bnexp.validate import load

REPO = Path(__file__).resolve().parents[1]
# evaluation (and weight norms) every 100 steps in every variant; timings exclude evaluations and checkpoints
BASE = """\
name: bench
dataset: {name: fashion_mnist, subset: %d, test_subset: 1000}
models: [{name: lenet5, norm: batchnorm}]
optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
batch_size: 64
epochs: 1
eval_every: 100
seeds: [0]
log_every: 50
"""
PROBES = {
    "none": [],
    "landscape every 100 steps (8 step sizes)": ["landscape_probe={every_steps: 100}"],
    "ics every 100 steps": ["ics_probe={every_steps: 100}"],
    "distributions every 100 steps": ["probes={every_steps: 100, layers: all}"],
    "weight norms at each evaluation": ["weight_norms=true"],
    "all of the above": [
        "landscape_probe={every_steps: 100}",
        "ics_probe={every_steps: 100}",
        "probes={every_steps: 100, layers: all}",
        "weight_norms=true",
    ],
}
PROCESSES = {
    "1 process": ["processes=1"],
    "2 processes, local BN": ["processes=2", "bn_sync=local"],
    "2 processes, synchronized BN": ["processes=2", "bn_sync=sync"],
}


def train_time(config: Path, overrides: list[str], data_root: str | None, out: Path) -> tuple[float, float, int]:
    """Seconds of training (all evaluation intervals), of it the seconds spent in probes, and images trained,
    from the run's files."""
    cfg = load(config, overrides)
    code = run_experiment(cfg, out, Silent(), data_root, "cpu", restart=True)  # runs of 2 processes start them
    if code:
        raise SystemExit(f"bench run failed ({overrides})")
    run = next(p for p in (out / "bench").iterdir() if p.is_dir())
    timings = [json.loads(line) for line in (run / "timing.jsonl").read_text().splitlines()]
    summary = json.loads((run / "summary.json").read_text())
    seconds = sum(t["train_time_s"] for t in timings)
    return seconds, sum(t["probe_time_s"] for t in timings), summary["steps"] * cfg.batch_size


def compare(
    name: str,
    variants: dict[str, list[str]],
    extra: list[str],
    subset: int,
    reps: int,
    data_root: str | None,
    probes: bool = False,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(BASE % subset)
        times: dict[str, list[float]] = {k: [] for k in variants}
        shares: dict[str, list[float]] = {k: [] for k in variants}  # probe time / training time, within a run
        images = 0
        for rep in range(reps):
            order = list(variants) if rep % 2 == 0 else list(reversed(variants))  # alternate: noise hits all alike
            for key in order:
                seconds, probe_seconds, images = train_time(
                    config, [*extra, *variants[key]], data_root, Path(tmp) / "out"
                )
                times[key].append(seconds)
                shares[key].append(probe_seconds / seconds)
                print(f"  rep {rep + 1} {key}: {seconds:.2f} s", file=sys.stderr, flush=True)
        base = statistics.median(next(iter(times.values())))
        print(f"\n{name} ({reps} alternating repetitions, medians; {images} training images per run)")
        print(
            f"| {'variant':<44} | training s | img/s | vs first |"
            + (" in-run probe time / training time |" if probes else "")
            + "\n|---|---:|---:|---:|"
            + ("---:|" if probes else "")
        )
        for key, values in times.items():
            med = statistics.median(values)
            share = f" {statistics.median(shares[key]):.1%} |" if probes else ""
            print(f"| {key:<44} | {med:.2f} | {images / med:,.0f} | {med / base:.2f}x |{share}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", choices=["probes", "processes"])
    args = parser.parse_args()
    if args.only in (None, "probes"):
        # the whole training set: 938 steps, so a probe every 100 steps runs 9 times, as in a real run
        compare(
            "Probe costs, LeNet5-BN, batch 64, one process", PROBES, [], 60000, args.reps, args.data_root, probes=True
        )
    if args.only in (None, "processes"):
        for batch in (32, 256):
            compare(
                f"Data parallelism, LeNet5-BN, global batch {batch}",
                PROCESSES,
                [f"batch_size={batch}"],
                12800,
                args.reps,
                args.data_root,
            )


if __name__ == "__main__":
    main()
