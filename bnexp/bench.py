"""Throughput benchmark: the articles' training loop vs bnexp's trainer vs a bare loop, side by side.

Each repetition runs every contender for the same number of steps, in alternating order, so machine noise
hits them alike; medians, min-max and ratios are printed. Also: host syncs per call site, the speed options
(bf16, compile, channels_last, threads), evaluation throughput, other models, --jobs and time to accuracy.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.data import DataLoader

import bnexp
from bnexp.config import DatasetConfig, ExperimentConfig, ModelConfig, OptimizerConfig, RunPlan
from bnexp.data import SOURCES, Data, Split, load_data, locate
from bnexp.models import build_model
from bnexp.store import RunDir
from bnexp.train import Trainer, evaluate, make_optimizer, seed_everything, torch_threads

CPU = torch.device("cpu")
PACKAGE_DIR = str(Path(bnexp.__file__).parent)
# tensor calls that make the host wait for the device's queue to drain
SYNCING_CALLS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu", "nonzero"}


class HostSyncCounter(TorchFunctionMode):
    """Counts the syncing tensor calls (item, tolist, bool(), .cpu(), ...) made from bnexp's own files,
    per call site ("loss_window.py:51 tolist").

    It works on any device, so a CPU test can check that the training loop has no per-step sync. Calls
    inside torch are not counted: its optimizers call item() on step counters that live on the CPU, which
    is no device sync. On CUDA, `cuda_sync_warnings` is the ground truth for everything.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sites: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNCING_CALLS:
            caller = sys._getframe(1)
            if caller.f_code.co_filename.startswith(PACKAGE_DIR):
                self.sites[f"{Path(caller.f_code.co_filename).name}:{caller.f_lineno} {name}"] += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def cuda_sync_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Every synchronizing CUDA call in the block (torch's sync debug mode) as a recorded warning."""
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught
    finally:
        torch.cuda.set_sync_debug_mode("default")


class _Silent:
    def start_run(self, *a) -> None: ...
    def advance(self, *a) -> None: ...
    def evaluated(self, *a) -> None: ...
    def end_run(self, *a) -> None: ...


def experiment(
    model: ModelConfig, dataset: str | DatasetConfig, batch: int, steps: int, **extra: Any
) -> ExperimentConfig:
    """A one-run, step-based experiment evaluated once at the end; `extra` overrides any key."""
    settings = {"seeds": [0], "eval_every": steps, "log_every": 50, **extra}
    return ExperimentConfig(
        name="bench",
        dataset=DatasetConfig(name=dataset) if isinstance(dataset, str) else dataset,
        models=[model],
        optimizer=OptimizerConfig(name="adam", lr=1e-3),
        batch_size=batch,
        steps=steps,
        **settings,
    )


def trainer_timings(plan: RunPlan, data: Data, device: torch.device) -> list[dict[str, Any]]:
    """Run bnexp's trainer on plan; its timing records (one per evaluation interval, eval time excluded)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / plan.name)
        run.start(plan.resolved())
        Trainer(plan, data, run, device, _Silent()).fit()
        run.close()
        return run.timings()


def bnexp_trainer(plan: RunPlan, data: Data, device: torch.device) -> float:
    """images/s of bnexp's trainer over plan's steps, as it measures itself (training time, no eval)."""
    return trainer_timings(plan, data, device)[-1]["images_per_s"]


def bare_step(
    plan: RunPlan, data: Data, device: torch.device, channels_last: bool = False
) -> tuple[Callable[[int], None], nn.Module]:
    """The floor's training step: pre-normalized float tensors, a random batch, forward/backward/step, nothing
    else. Returns step(i), which trains on random batch i (i < plan's steps), and the model."""
    seed_everything(0, True, device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(plan.model, data.inputs).to(device, memory_format=memory_format)
    opt = make_optimizer(plan.experiment.optimizer, model.parameters(), plan.lr)
    x_all, y_all = data.to_input(data.train.images).contiguous(memory_format=memory_format), data.train.labels
    idx = torch.randint(0, len(y_all), (plan.experiment.steps, plan.experiment.batch_size), device=device)

    def step(i: int) -> None:
        loss = F.cross_entropy(model(x_all[idx[i]]), y_all[idx[i]])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, model


def bare_loop(plan: RunPlan, data: Data, device: torch.device, channels_last: bool = False) -> float:
    """images/s of `bare_step` over plan's steps."""
    step, _ = bare_step(plan, data, device, channels_last)
    steps = plan.experiment.steps
    _sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    _sync(device)
    return steps * plan.experiment.batch_size / (time.perf_counter() - t0)


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


def articles_pipeline(plan: RunPlan, root: Path) -> float:
    """The articles' input pipeline alone (no model): the ceiling of their loop on any accelerator."""
    loader = _articles_loader(SOURCES[plan.experiment.dataset.name], root, True, plan.experiment.batch_size)
    batches = iter(loader)
    next(batches)  # worker start-up is not counted
    t0, images = time.perf_counter(), 0
    for _, (_, y) in zip(range(plan.experiment.steps), batches, strict=False):
        images += len(y)
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


def synthetic(dataset: str, n: int, device: torch.device, n_test: int = 256) -> Data:
    """Random uint8 images of a dataset's shape (for the CIFAR-shaped benchmark, where no real data is here): n to
    train on, and the first n_test of them as the test split (the end-of-run evaluation is not what is timed)."""
    spec = SOURCES[dataset].inputs
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, spec.channels, spec.height, spec.width), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, spec.num_classes, (n,), generator=g)
    train = Split(images.to(device), labels.to(device))
    test = Split(train.images[:n_test], train.labels[:n_test])
    return Data(dataset, train, test, spec, [0.5] * spec.channels, [0.25] * spec.channels, "synthetic")


def main(
    reps: int = 5,
    steps: int = 300,
    data_root: str | None = None,
    device_name: str = "cpu",
    time_to_accuracy: bool = True,
    verify_checksums: bool = True,
    batch_sizes: tuple[int, ...] = (64, 256),
) -> None:
    device = torch.device(device_name)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, {reps} alternating reps\n")
    lenet = ModelConfig(name="lenet5", norm="batchnorm")
    fmnist = DatasetConfig(name="fashion_mnist", normalize="unit", verify_checksums=verify_checksums)
    data = load_data(fmnist, device, data_root)
    root, _ = locate(fmnist, data_root)

    def lenet_plan(batch: int, n_steps: int = steps, **extra) -> RunPlan:
        return RunPlan("bench", lenet, 1.0, 0, experiment(lenet, fmnist, batch, n_steps, **extra))

    print("## LeNet5-BN on Fashion-MNIST, Adam: training images/s\n")
    trainer_speed = {}
    for batch in batch_sizes:
        plan = lenet_plan(batch)
        res = _measure(
            {
                "1 articles' loop": lambda plan=plan: articles_loop(plan, root, device),
                "2 bnexp trainer": lambda plan=plan: bnexp_trainer(plan, data, device),
                "3 bare loop": lambda plan=plan: bare_loop(plan, data, device),
                "articles' input pipeline alone (no model)": lambda plan=plan: articles_pipeline(plan, root),
            },
            reps,
        )
        a, trainer_speed[batch], c, _ = (statistics.median(v) for v in res.values())
        print(f"batch {batch}, {steps} steps per rep\n\n| loop | median img/s | min–max |\n|---|---:|---:|")
        print("\n".join(_row(k, v) for k, v in res.items()))
        print(
            f"\nratio bnexp / articles' loop: {trainer_speed[batch] / a:.2f}x; "
            f"bnexp / bare loop: {trainer_speed[batch] / c:.2f}x\n"
        )

    _host_syncs(lenet_plan(64), data, device)
    _options(lenet_plan, data, device, reps, batch_sizes)

    print("## Evaluation (LeNet5-BN, 10,000 test images), images/s\n")
    model = build_model(lenet, data.inputs).to(device)
    compiled = torch.compile(model)
    evaluate(compiled, data, data.test, 500)  # compile outside the timing
    eval_res = _measure(
        {f"bnexp evaluate, batch {bs}": (lambda bs=bs: _timed_eval(model, data, bs)) for bs in (250, 500, 1000, 5000)}
        | {
            "bnexp evaluate, batch 500, precision bf16": lambda: _timed_eval(model, data, 500, "bf16"),
            "bnexp evaluate, batch 500, compile": lambda: _timed_eval(compiled, data, 500),
            "articles' eval loop (DataLoader, batch 256)": lambda: articles_eval(
                model, root, SOURCES["fashion_mnist"], device, 256
            ),
        },
        reps,
    )
    first = batch_sizes[0]
    print(f"| evaluation | median img/s | min–max | vs bnexp training at batch {first} |\n|---|---:|---:|---:|")
    for name, values in eval_res.items():
        print(f"{_row(name, values)} {statistics.median(values) / trainer_speed[first]:.1f}x |")
    print()

    print("## Other models: bnexp trainer vs bare loop, training images/s\n")
    print("| model | batch | bnexp | bare | bnexp / bare |\n|---|---:|---:|---:|---:|")
    others = [
        (ModelConfig(name="alexnet_small", norm="batchnorm"), "cifar100", 64, max(5, steps // 15)),
        (
            ModelConfig(name="mlp", norm="batchnorm", activation="sigmoid", init_std=0.05),
            DatasetConfig(name="mnist", verify_checksums=verify_checksums),
            60,
            steps * 3,
        ),
    ]
    for model_cfg, dataset, batch, n_steps in others:
        exp = experiment(model_cfg, dataset, batch, n_steps)
        plan = RunPlan("bench", model_cfg, 1.0, 0, exp)
        # as many random images as the steps use (at least 1,000)
        d = (
            synthetic(dataset, max(1000, batch * n_steps), device)
            if dataset == "cifar100"
            else load_data(exp.dataset, device, data_root)
        )
        contenders = {
            "bnexp": lambda plan=plan, d=d: bnexp_trainer(plan, d, device),
            "bare": lambda plan=plan, d=d: bare_loop(plan, d, device),
        }
        res = _measure(contenders, reps)
        b, c = statistics.median(res["bnexp"]), statistics.median(res["bare"])
        print(
            f"| {model_cfg.name}-bn{' (CIFAR-shaped random data)' if dataset == 'cifar100' else ''} | {batch} | "
            f"{b:,.0f} | {c:,.0f} | {b / c:.2f} |"
        )
    print("\n## Several runs at once: 4 LeNet5-BN runs (4 seeds), wall seconds for the whole grid\n")
    grid = experiment(lenet, fmnist, 64, steps * 2, seeds=[0, 1, 2, 3])
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


def _host_syncs(plan: RunPlan, data: Data, device: torch.device) -> None:
    """How often bnexp's training loop waits for the device, per call site."""
    counter = HostSyncCounter()
    with counter, cuda_sync_warnings() if device.type == "cuda" else nullcontext([]) as cuda_syncs:
        bnexp_trainer(plan, data, device)
    steps = plan.experiment.steps
    print(f"## Host syncs: bnexp trainer, {steps} steps, log_every {plan.experiment.log_every}, one evaluation\n")
    print("| call site in bnexp | calls | per step |\n|---|---:|---:|")
    for site, n in sorted(counter.sites.items()):
        print(f"| {site} | {n} | {n / steps:.3f} |")
    if device.type == "cuda":
        print(
            f"\nsynchronizing CUDA calls reported by torch's sync debug mode: {len(cuda_syncs)} "
            f"({len(cuda_syncs) / steps:.3f} per step)"
        )
    print()


def _options(
    lenet_plan: Callable[..., RunPlan], data: Data, device: torch.device, reps: int, batch_sizes: tuple[int, ...]
) -> None:
    """Speed options, each against the default (fp32, eager, all threads), measured side by side.

    Every trainer contender first trains a warm-up interval (where torch.compile compiles); its images/s
    are of a second interval of the same length. The first repetition's extra warm-up time is the compile
    time (later ones reuse the compiled graphs). channels_last is not a config option, so it is measured
    on the bare loop.
    """
    threads = torch.get_num_threads()
    print(f"## Options: LeNet5-BN training, relative to the default (fp32, eager, {threads} threads)\n")
    print("| option | batch | median img/s | vs default | first rep's warm-up extra s |\n|---|---:|---:|---:|---:|")
    for batch in batch_sizes:
        torch._dynamo.reset()  # each batch size compiles from scratch
        steps = lenet_plan(batch).experiment.steps
        options = {"default": {}, "precision: bf16": {"precision": "bf16"}, "compile: true": {"compile": True}}
        plans = {name: lenet_plan(batch, 2 * steps, eval_every=steps, **extra) for name, extra in options.items()}
        contenders = {name: partial(_steady_and_warmup, plan, data, device) for name, plan in plans.items()}
        contenders[f"{max(1, threads // 2)} thread(s)"] = partial(
            _steady_and_warmup, plans["default"], data, device, max(1, threads // 2)
        )
        for layout in ("contiguous", "channels_last"):
            contenders[f"bare loop, {layout}"] = partial(
                _bare_and_no_warmup, lenet_plan(batch), data, device, layout == "channels_last"
            )
        res = _measure(contenders, reps)
        for name, values in res.items():
            speed, extra = statistics.median(v for v, _ in values), values[0][1]
            ref = res["bare loop, contiguous" if name.startswith("bare") else "default"]
            print(
                f"| {name} | {batch} | {speed:,.0f} | {speed / statistics.median(v for v, _ in ref):.2f}x | "
                f"{extra:.1f} |"
            )
    print()


def _bare_and_no_warmup(plan: RunPlan, data: Data, device: torch.device, channels_last: bool) -> tuple[float, float]:
    return bare_loop(plan, data, device, channels_last), 0.0


def _steady_and_warmup(plan: RunPlan, data: Data, device: torch.device, threads: int | None = None):
    """(images/s of plan's last interval, seconds its first interval took beyond it: compilation, warm-up)."""
    with torch_threads(threads or torch.get_num_threads()):
        timings = trainer_timings(plan, data, device)
    return timings[-1]["images_per_s"], timings[0]["train_time_s"] - timings[-1]["train_time_s"]


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


def _timed_eval(model, data: Data, batch: int, precision: str = "fp32") -> float:
    t0 = time.perf_counter()
    evaluate(model, data, data.test, batch, precision)
    return len(data.test) / (time.perf_counter() - t0)


def _time_to_accuracy_bnexp(
    model: ModelConfig, ds: DatasetConfig, data: Data, device, seed: int, target: float = 0.89, max_epochs: int = 10
) -> float:
    exp = ExperimentConfig(
        name="tta",
        dataset=ds,
        models=[model],
        optimizer=OptimizerConfig(name="adam", lr=1e-3),
        batch_size=64,
        seeds=[seed],
        epochs=max_epochs,
        thresholds=[target],
    )
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


def _time_to_accuracy_articles(
    model_cfg: ModelConfig, root: Path, device, seed: int, target: float = 0.89, max_epochs: int = 10
) -> float:
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
