"""Throughput benchmark: the articles' training loop vs bnexp's trainer vs a bare loop, side by side.

Each repetition runs every contender for the same number of steps, in alternating order, so machine noise
hits them alike; medians, min-max and ratios are printed. Also evaluation throughput and time to accuracy.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from bnexp.config import DatasetConfig, ExperimentConfig, ModelConfig, OptimizerConfig, RunPlan
from bnexp.data import SOURCES, Data, Split, load_data, locate
from bnexp.models import build_model
from bnexp.store import RunDir
from bnexp.train import Trainer, evaluate, make_optimizer, seed_everything

CPU = torch.device("cpu")


class _Silent:
    def start_run(self, *a) -> None: ...
    def advance(self, *a) -> None: ...
    def evaluated(self, *a) -> None: ...
    def end_run(self, *a) -> None: ...


def experiment(model: ModelConfig, dataset: str, batch: int, steps: int, **extra) -> ExperimentConfig:
    return ExperimentConfig(
        name="bench", dataset=DatasetConfig(name=dataset), models=[model],
        optimizer=OptimizerConfig(name="adam", lr=1e-3), batch_size=batch, seeds=[0], steps=steps,
        eval_every=steps, log_every=50, eval_batch_size=5000, **extra,
    )  # fmt: skip


def bnexp_trainer(plan: RunPlan, data: Data, device: torch.device) -> float:
    """images/s of bnexp's trainer over plan's steps, as it measures itself (training time, no eval)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / plan.name)
        run.start(plan.resolved())
        trainer = Trainer(plan, data, run, device, _Silent())
        trainer.fit()
        run.close()
        return run.timings()[-1]["images_per_s"]


def bare_loop(plan: RunPlan, data: Data, device: torch.device) -> float:
    """The floor: pre-normalized float tensors, random batches, forward/backward/step, nothing else."""
    seed_everything(0, True, device)
    model = build_model(plan.model, data.inputs).to(device)
    opt = make_optimizer(plan.experiment.optimizer, model.parameters(), plan.lr)
    x_all, y_all = data.to_input(data.train.images), data.train.labels
    b, steps = plan.experiment.batch_size, plan.experiment.steps
    idx = torch.randint(0, len(y_all), (steps, b), device=device)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        loss = F.cross_entropy(model(x_all[idx[i]]), y_all[idx[i]])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return steps * b / (time.perf_counter() - t0)


def _articles_loader(source, root: Path, train: bool, batch: int) -> DataLoader:
    """The main article's input pipeline: the torchvision dataset + ToTensor(), one worker, shuffled training."""
    from torchvision import transforms

    ds = source.cls(root=str(root), train=train, transform=transforms.ToTensor())
    return DataLoader(ds, batch_size=batch, shuffle=train, num_workers=1)


def articles_loop(plan: RunPlan, root: Path, device: torch.device) -> float:
    """The main article's scripts: torchvision dataset + ToTensor, DataLoader(shuffle, 1 worker), .item() per step."""
    source = SOURCES[plan.experiment.dataset.name]
    loader = _articles_loader(source, root, True, plan.experiment.batch_size)
    seed_everything(0, True, device)
    model = build_model(plan.model, source.inputs).to(device)
    opt = make_optimizer(plan.experiment.optimizer, model.parameters(), plan.lr)
    steps, done, images = plan.experiment.steps, 0, 0
    t0 = None
    for x, y in loader:
        if t0 is None:  # worker start-up is not counted
            t0 = time.perf_counter()
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        _ = loss.item()  # the scripts log every step
        done, images = done + 1, images + len(y)
        if done == steps:
            break
    return images / (time.perf_counter() - t0)


def articles_eval(model: torch.nn.Module, root: Path, source, device: torch.device, batch: int) -> float:
    loader = _articles_loader(source, root, False, batch)
    model.eval()
    t0, n, correct = None, 0, 0
    with torch.no_grad():
        for x, y in loader:
            t0 = t0 or time.perf_counter()  # worker start-up is not counted
            correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()  # per batch, as the scripts do
            n += len(y)
    model.train()
    return n / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _measure(contenders: dict[str, Callable[[], float]], reps: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for rep in range(reps):
        order = list(contenders) if rep % 2 == 0 else list(reversed(contenders))
        for name in order:
            results[name].append(contenders[name]())
    return results


def _row(name: str, values: list[float]) -> str:
    return f"| {name} | {statistics.median(values):,.0f} | {min(values):,.0f}–{max(values):,.0f} |"


def synthetic(dataset: str, n: int, device: torch.device) -> Data:
    """Random uint8 images of a dataset's shape (for the CIFAR-shaped benchmark, where no real data is here)."""
    spec = SOURCES[dataset].inputs
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, spec.channels, spec.height, spec.width), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, spec.num_classes, (n,), generator=g)
    split = Split(images.to(device), labels.to(device))
    return Data(dataset, split, split, spec, [0.5] * spec.channels, [0.25] * spec.channels, "synthetic")


def main(reps: int = 5, steps: int = 300, data_root: str | None = None, device_name: str = "cpu",
         time_to_accuracy: bool = True) -> None:  # fmt: skip
    device = torch.device(device_name)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, {reps} alternating reps\n")
    lenet = ModelConfig(name="lenet5", norm="batchnorm")
    fmnist = DatasetConfig(name="fashion_mnist", normalize="unit")
    data = load_data(fmnist, device, data_root)
    root, _ = locate(fmnist, data_root)
    print("## LeNet5-BN on Fashion-MNIST, Adam: training images/s\n")
    for batch in (64, 256):
        exp = replace(experiment(lenet, "fashion_mnist", batch, steps), dataset=fmnist)
        plan = RunPlan("bench", lenet, 1.0, 0, exp)
        res = _measure({
            "1 articles' loop": lambda plan=plan: articles_loop(plan, root, device),
            "2 bnexp trainer": lambda plan=plan: bnexp_trainer(plan, data, device),
            "3 bare loop": lambda plan=plan: bare_loop(plan, data, device),
        }, reps)  # fmt: skip
        a, b, c = (statistics.median(v) for v in res.values())
        print(f"batch {batch}, {steps} steps per rep\n\n| loop | median img/s | min–max |\n|---|---:|---:|")
        print("\n".join(_row(k, v) for k, v in res.items()))
        print(f"\nratio bnexp / articles' loop: {b / a:.2f}x; bnexp / bare loop: {b / c:.2f}x\n")

    print("## Evaluation (LeNet5-BN, 10,000 test images), images/s\n")
    model = build_model(lenet, data.inputs).to(device)
    eval_res = _measure({
        f"bnexp evaluate, batch {bs}": (lambda bs=bs: _timed_eval(model, data, bs)) for bs in (1000, 5000, 10000)
    } | {"articles' eval loop (DataLoader, batch 256)": lambda: articles_eval(model, root, SOURCES["fashion_mnist"],
                                                                             device, 256)}, reps)  # fmt: skip
    print("| evaluation | median img/s | min–max |\n|---|---:|---:|")
    print("\n".join(_row(k, v) for k, v in eval_res.items()) + "\n")

    print("## Other models: bnexp trainer vs bare loop, training images/s\n")
    print("| model | batch | bnexp | bare | bnexp / bare |\n|---|---:|---:|---:|---:|")
    others = [
        (ModelConfig(name="alexnet_small", norm="batchnorm"), "cifar100", 64, max(5, steps // 15)),
        (ModelConfig(name="mlp", norm="batchnorm", activation="sigmoid", init_std=0.05), "mnist", 60, steps * 3),
    ]
    for model_cfg, dataset, batch, n_steps in others:
        exp = experiment(model_cfg, dataset, batch, n_steps)
        plan = RunPlan("bench", model_cfg, 1.0, 0, exp)
        d = synthetic(dataset, 5000, device) if dataset == "cifar100" else load_data(exp.dataset, device, data_root)
        contenders = {
            "bnexp": lambda plan=plan, d=d: bnexp_trainer(plan, d, device),
            "bare": lambda plan=plan, d=d: bare_loop(plan, d, device),
        }
        res = _measure(contenders, reps)
        b, c = statistics.median(res["bnexp"]), statistics.median(res["bare"])
        print(f"| {model_cfg.name}-bn{' (CIFAR-shaped random data)' if dataset == 'cifar100' else ''} | {batch} | "
              f"{b:,.0f} | {c:,.0f} | {b / c:.2f} |")  # fmt: skip
    print("\n## Several runs at once: 4 LeNet5-BN runs (4 seeds), wall seconds for the whole grid\n")
    grid = replace(experiment(lenet, "fashion_mnist", 64, steps * 2), dataset=fmnist, seeds=[0, 1, 2, 3])
    walls = _measure({f"--jobs {j}": (lambda j=j: _grid_wall(grid, data_root, j)) for j in (1, 2)}, max(1, reps // 2))
    print("| mode | median wall s | min–max |\n|---|---:|---:|")
    for name, vals in walls.items():
        print(f"| {name} | {statistics.median(vals):.1f} | {min(vals):.1f}–{max(vals):.1f} |")
    one, two = (statistics.median(walls[f"--jobs {j}"]) for j in (1, 2))
    print(f"\nratio --jobs 1 / --jobs 2 wall time: {one / two:.2f}x")
    if time_to_accuracy:
        print("\n## Time to 0.89 test accuracy, LeNet5-BN, Adam lr 1e-3, batch 64 (train + eval wall s)\n")
        tta_bnexp = [_time_to_accuracy_bnexp(lenet, fmnist, data, device, seed) for seed in range(3)]
        tta_art = [_time_to_accuracy_articles(lenet, root, device, seed) for seed in range(3)]
        print("| loop | seconds (mean of 3 seeds) | per seed |\n|---|---:|---|")
        for name, vals in (("bnexp", tta_bnexp), ("articles' loop", tta_art)):
            print(f"| {name} | {statistics.fmean(vals):.1f} | {', '.join(f'{v:.1f}' for v in vals)} |")
        print(f"\nratio articles' / bnexp: {statistics.fmean(tta_art) / statistics.fmean(tta_bnexp):.2f}x")


def _grid_wall(cfg: ExperimentConfig, data_root: str | None, jobs: int) -> float:
    from bnexp.progress import PlainReporter
    from bnexp.runner import run_experiment

    saved_stdout = os.dup(1)  # the worker processes print their progress to file descriptor 1
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as quiet:
        os.dup2(quiet.fileno(), 1)
        try:
            t0 = time.perf_counter()
            run_experiment(cfg, tmp, PlainReporter(quiet), data_root, "cpu", jobs=jobs)
            return time.perf_counter() - t0
        finally:
            os.dup2(saved_stdout, 1)
            os.close(saved_stdout)


def _timed_eval(model, data: Data, batch: int) -> float:
    t0 = time.perf_counter()
    evaluate(model, data, data.test, batch)
    return len(data.test) / (time.perf_counter() - t0)


def _time_to_accuracy_bnexp(model: ModelConfig, ds: DatasetConfig, data: Data, device, seed: int,
                            target: float = 0.89, max_epochs: int = 10) -> float:  # fmt: skip
    exp = ExperimentConfig(name="tta", dataset=ds, models=[model], optimizer=OptimizerConfig(name="adam", lr=1e-3),
                           batch_size=64, seeds=[seed], epochs=max_epochs, eval_batch_size=5000,
                           thresholds=[target])  # fmt: skip
    plan = RunPlan("tta", model, 1.0, seed, exp)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / "tta")
        run.start(plan.resolved())
        trainer = _StopAtAccuracy(plan, data, run, device, _Silent())
        trainer.target = target
        trainer.fit()
        run.close()
        return sum(t["train_time_s"] + t["eval_time_s"] for t in run.timings())


class _StopAtAccuracy(Trainer):
    """Stops (as a stop request would) at the first evaluation that reaches `target` test accuracy."""

    target = 1.0

    def _evaluate(self, train_time: float) -> None:
        super()._evaluate(train_time)
        if self.run.metrics("eval")[-1]["test_acc"] >= self.target:
            self.stop.request()


def _time_to_accuracy_articles(model_cfg: ModelConfig, root: Path, device, seed: int, target: float = 0.89,
                               max_epochs: int = 10) -> float:  # fmt: skip
    source = SOURCES["fashion_mnist"]
    seed_everything(seed, True, device)
    train, test = _articles_loader(source, root, True, 64), _articles_loader(source, root, False, 256)
    model = build_model(model_cfg, source.inputs).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for _ in range(max_epochs):
        model.train()
        for x, y in train:
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            _ = loss.item()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test:
                correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
        if correct / len(test.dataset) >= target:
            break
    return time.perf_counter() - t0
