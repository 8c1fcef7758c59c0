"""A synthetic run store, written through bnexp's own run-store code, for plot/report/list tests."""

from __future__ import annotations

import math
from pathlib import Path

from bnexp.store import EXPERIMENT_FILE, RunDir, dump_yaml, write_atomic

NORMS = {"lenet5": "none", "lenet5-bn": "batchnorm"}
MULTS = [1.0, 5.0]
SEEDS = [0, 1]
PER_EPOCH = 10


def test_acc(tag: str, mult: float, seed: int, epoch: int) -> float:
    """Deterministic fake accuracies: BN higher, rising with epochs, seeds 0.02 apart."""
    base = 0.88 if tag == "lenet5-bn" else 0.85
    return round(base + 0.01 * epoch + 0.02 * seed - 0.01 * (mult > 1), 6)


def write_experiment(root: Path, name: str = "synthetic", epochs: int = 3) -> Path:
    exp_dir = root / name
    runs = []
    for tag, norm in NORMS.items():
        for mult in MULTS:
            for seed in SEEDS:
                runs.append((tag, norm, mult, seed))
    config = {
        "name": name,
        "description": "synthetic results for tests",
        "epochs": epochs,
        "log_every": 2,
        "thresholds": [0.9],
        "probes": {
            "at_epochs": [1, epochs],
            "every_steps": 10,
            "range": [-4.0, 4.0],
            "percentiles": [15.0, 50.0, 85.0],
        },
        "reference": {
            "source": "test article",
            "note": "BN is better",
            "test_acc_at_epoch": {"lenet5-bn_lr1x": {1: 0.8859, 2: 0.5, 9: 0.9}},
            "final": {"lenet5_lr5x": {"final_train_loss": 2.3026}},
        },
    }
    names = [f"{tag}_lr{mult:g}x_s{seed}" for tag, _, mult, seed in runs]
    write_atomic(exp_dir / EXPERIMENT_FILE, dump_yaml({"config": config, "runs": names, "data": {"source": "fake"}}))
    for (tag, norm, mult, seed), run_name in zip(runs, names, strict=True):
        run = RunDir(exp_dir / run_name)
        model = {"name": "lenet5", "norm": norm, "activation": "relu"}
        run.start(
            {
                "run": run_name,
                "model": model,
                "lr": 0.01 * mult,
                "lr_multiplier": mult,
                "seed": seed,
                "dataset": {"name": "fashion_mnist"},
            }
        )
        evals = []
        stuck = tag == "lenet5" and mult == 5.0  # never leaves chance
        for step in range(2, epochs * PER_EPOCH + 1, 2):
            loss = 2.31 if stuck else 2.3 * math.exp(-step / 10) + 0.1
            run.log({"event": "train", "step": step, "epoch": step / PER_EPOCH, "loss": loss, "steps": 2})
            if step % PER_EPOCH == 0:
                e = step // PER_EPOCH
                record = {
                    "event": "eval",
                    "step": step,
                    "epoch": float(e),
                    "test_loss": 0.3,
                    "test_acc": test_acc(tag, mult, seed, e),
                    "train_acc": test_acc(tag, mult, seed, e) + 0.05,
                }
                run.log(record)
                evals.append(record)
                for layer in range(2):
                    spread = 1.0 if norm == "batchnorm" else 0.3 * (layer + 1)
                    hist = [round(100 * math.exp(-((-3.9 + 0.2 * i) ** 2) / (2 * spread**2))) for i in range(40)]
                    run.log_probe(
                        {
                            "step": step,
                            "epoch": float(e),
                            "layer": layer,
                            "name": f"act{layer}",
                            "n": sum(hist),
                            "mean": 0.0,
                            "std": spread,
                            "below_range": 0,
                            "above_range": 0,
                            "percentiles": {"15.0": -spread, "50.0": 0.0, "85.0": spread},
                            "unit": 0,
                            "unit_percentiles": {"15.0": -spread * e, "50.0": 0.1 * e, "85.0": spread * e},
                            "hist": hist,
                        }
                    )
        run.close()
        diverged = tag == "lenet5" and mult == 5.0 and seed == 1
        best = max(evals, key=lambda r: r["test_acc"])
        run.write_summary(
            {
                "run": run_name,
                "status": "diverged" if diverged else "completed",
                "seed": seed,
                "final_test_acc": evals[-1]["test_acc"],
                "best_test_acc": best["test_acc"],
                "final_train_acc": evals[-1]["train_acc"],
                "final_generalization_gap": evals[-1]["train_acc"] - evals[-1]["test_acc"],
                "final_train_loss": 2.31 if tag == "lenet5" and mult == 5.0 else 0.2,
                "diverged_at_step": 17 if diverged else None,
                "not_training": tag == "lenet5" and mult == 5.0,
                "time_to_threshold": {"0.9": {"step": 20, "epoch": 2.0} if best["test_acc"] >= 0.9 else None},
                "steps_per_epoch": PER_EPOCH,
                "images_per_s": 1000.0 + seed,
                "train_time_s": 3.0,
                "versions": {"torch": "2.x"},
                "device": {"type": "cpu", "name": "test"},
            }
        )
    return exp_dir
