from __future__ import annotations

import json

import pytest
import torch

from bnexp import train
from bnexp.config import NORMS
from bnexp.progress import PlainReporter
from bnexp.runner import run_experiment
from bnexp.store import RunDir, experiment_runs
from bnexp.validate import load as load_config


def run(config_path, out, tiny_root, overrides=()):
    return run_experiment(load_config(config_path, list(overrides)), out, PlainReporter(), data_root=tiny_root)


def test_short_run_writes_the_run_store(tiny_config, tiny_root, tmp_path):
    assert run(tiny_config, tmp_path / "out", tiny_root) == 0
    exp = tmp_path / "out" / "tiny"
    assert (exp / "experiment.yaml").is_file()
    runs = experiment_runs(exp)
    assert [r.name for r in runs] == ["lenet5-bn_lr1x_s0", "lenet5_lr1x_s0"]
    bn = RunDir(exp / "lenet5-bn_lr1x_s0")
    cfg = bn.config()
    assert cfg["model"]["norm"] == "batchnorm" and cfg["lr"] == 0.003 and cfg["seed"] == 0
    summary = bn.summary()
    assert summary["status"] == "completed" and summary["steps"] == 2 * summary["steps_per_epoch"] == 20
    assert summary["bn"]["momentum"] == 0.1 and summary["bn"]["momentum_in_article_convention"] == 0.9
    assert summary["versions"]["torch"] == str(torch.__version__) and summary["device"]["type"] == "cpu"
    evals = bn.metrics("eval")
    assert [e["epoch"] for e in evals] == [1.0, 2.0]
    assert all(0 <= e["test_acc"] <= 1 for e in evals)
    timings = bn.timings()
    assert [t["step"] for t in timings] == [10, 20] and all(t["images_per_s"] > 0 for t in timings)
    assert summary["images_per_s"] > 0 and summary["train_time_s"] > 0
    assert all(t["probe_time_s"] == 0 for t in timings) and summary["probe_time_s"] == 0  # no probes configured
    assert summary["final_test_acc"] == evals[-1]["test_acc"]
    assert summary["best_test_acc"] == max(e["test_acc"] for e in evals)
    train = bn.metrics("train")
    assert [t["step"] for t in train] == [4, 8, 10, 14, 18, 20]  # every log_every steps and at each epoch end
    # the learnable tiny data is learned by the BN model
    assert evals[-1]["test_acc"] > 0.5


def test_runs_are_deterministic_on_cpu(tiny_config, tiny_root, tmp_path):
    for out in ("a", "b"):
        run(tiny_config, tmp_path / out, tiny_root, ["models=[{name: lenet5}]"])
    a, b = (RunDir(tmp_path / o / "tiny" / "lenet5-bn_lr1x_s0") for o in ("a", "b"))
    strip = lambda rs: [{k: v for k, v in r.items() if "time" not in k and "per_s" not in k} for r in rs]  # noqa: E731
    assert strip(a.metrics()) == strip(b.metrics())
    assert (a.path / "metrics.jsonl").read_bytes() == (b.path / "metrics.jsonl").read_bytes()
    # the promise holds under the same recorded conditions, which both runs record alike (issue 38, item 2)
    conditions = [(s["versions"]["torch"], s["device"]) for s in (a.summary(), b.summary())]
    assert conditions[0] == conditions[1]
    device = conditions[0][1]
    assert device["torch_threads"] == torch.get_num_threads() and device["cpu"] == train.cpu_model()
    assert device["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    wa, wb = (torch.load(r.path / "checkpoint.pt", weights_only=False)["model"] for r in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_seeds_differ(tiny_config, tiny_root, tmp_path):
    run(tiny_config, tmp_path, tiny_root, ["models=[{name: lenet5}]", "seeds=[0, 1]", "epochs=1"])
    losses = [RunDir(tmp_path / "tiny" / f"lenet5-bn_lr1x_s{s}").metrics("train")[0]["loss"] for s in (0, 1)]
    assert losses[0] != losses[1]


def test_divergence_stops_that_run_only(tiny_config, tiny_root, tmp_path):
    overrides = [
        "optimizer={name: sgd, lr: 1.0e+6}",
        "lr_multipliers=[1, 1.0e-9]",
        "models=[{name: lenet5, norm: none}]",
    ]
    assert run(tiny_config, tmp_path, tiny_root, overrides) == 0
    diverged = RunDir(tmp_path / "tiny" / "lenet5_lr1x_s0").summary()
    assert diverged["status"] == "diverged" and 1 <= diverged["diverged_at_step"] <= 4
    records = RunDir(tmp_path / "tiny" / "lenet5_lr1x_s0").metrics()
    assert records[-1]["event"] == "diverged" and records[-1]["step"] == diverged["diverged_at_step"]
    assert RunDir(tmp_path / "tiny" / "lenet5_lr1e-09x_s0").summary()["status"] == "completed"


def test_loss_ceiling_counts_as_divergence(tiny_config, tiny_root, tmp_path):
    assert run(tiny_config, tmp_path, tiny_root, ["loss_ceiling=0.001", "models=[{name: lenet5}]"]) == 0
    summary = RunDir(tmp_path / "tiny" / "lenet5-bn_lr1x_s0").summary()
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == 1


def test_a_failing_run_does_not_stop_the_others(tiny_config, tiny_root, tmp_path, monkeypatch):
    real = train.Trainer.fit

    def flaky(self):
        if self.plan.model.norm == "none":
            raise RuntimeError("simulated failure")
        return real(self)

    monkeypatch.setattr(train.Trainer, "fit", flaky)
    assert run(tiny_config, tmp_path, tiny_root) == 1
    failed = RunDir(tmp_path / "tiny" / "lenet5_lr1x_s0")
    assert failed.summary()["status"] == "failed" and "simulated failure" in failed.summary()["error"]
    assert "Traceback" in (failed.path / "error.log").read_text()
    assert RunDir(tmp_path / "tiny" / "lenet5-bn_lr1x_s0").summary()["status"] == "completed"


def test_step_based_run_evaluates_every_eval_every(tiny_config, tiny_root, tmp_path):
    overrides = ["epochs=null", "steps=25", "eval_every=10", "models=[{name: lenet5}]"]
    assert run(tiny_config, tmp_path, tiny_root, overrides) == 0
    r = RunDir(tmp_path / "tiny" / "lenet5-bn_lr1x_s0")
    assert [e["step"] for e in r.metrics("eval")] == [10, 20, 25]
    assert r.summary()["steps"] == 25


@pytest.mark.parametrize("norm", NORMS)
def test_every_norm_trains(norm, tiny_config, tiny_root, tmp_path):
    overrides = [f"models=[{{name: lenet5, norm: {norm}}}]", "epochs=1"]
    assert run(tiny_config, tmp_path, tiny_root, overrides) == 0
    summary = next(r.summary() for r in experiment_runs(tmp_path / "tiny"))
    assert summary["status"] == "completed" and summary["bn"]["norm"] == norm


def test_metrics_are_strict_json(tiny_config, tiny_root, tmp_path):
    run(tiny_config, tmp_path, tiny_root, ["optimizer={name: sgd, lr: 1.0e+6}", "models=[{name: lenet5, norm: none}]"])
    text = (tmp_path / "tiny" / "lenet5_lr1x_s0" / "metrics.jsonl").read_text()
    for line in text.splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_not_training_flag_and_time_to_threshold(tiny_config, tiny_root, tmp_path):
    overrides = [
        "optimizer={name: sgd, lr: 0.05}",
        "lr_multipliers=[1, 1.0e-7]",
        "thresholds=[0.5, 0.99999]",
        "models=[{name: lenet5}]",
        "epochs=3",
    ]
    assert run(tiny_config, tmp_path, tiny_root, overrides) == 0
    trained = RunDir(tmp_path / "tiny" / "lenet5-bn_lr1x_s0").summary()
    frozen = RunDir(tmp_path / "tiny" / "lenet5-bn_lr1e-07x_s0").summary()
    assert trained["not_training"] is False and frozen["not_training"] is True
    evals = RunDir(tmp_path / "tiny" / "lenet5-bn_lr1x_s0").metrics("eval")
    first = next(e for e in evals if e["test_acc"] >= 0.5)
    assert trained["time_to_threshold"]["0.5"] == {"step": first["step"], "epoch": first["epoch"]}
    assert frozen["time_to_threshold"] == {"0.5": None, "0.99999": None}
    assert trained["variant"] == "lenet5-bn_lr1x" and trained["final_train_loss"] > 0


@pytest.mark.parametrize(("option", "rel"), [("precision=bf16", 0.1), ("compile=true", 1e-3)])
def test_speed_options_follow_the_fp32_eager_run(option, rel, tiny_config, tiny_root, tmp_path):
    """Same seed, same data order: bf16 autocast and torch.compile only change rounding, so the training
    loss follows the default run's (to bf16's precision, or to float32 rounding for compiled kernels);
    probe steps still record while the model is compiled."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    # an MLP: the trainer's compile path is the same for every model, and its few kernels build in a fraction
    # of LeNet5's time on a fresh machine (no compiled-kernel cache)
    common = ["models=[{name: mlp, norm: batchnorm}]", "probes={every_steps: 5, layers: [0]}"]
    run(tiny_config, tmp_path / "default", tiny_root, common)
    run(tiny_config, tmp_path / "option", tiny_root, [*common, option])
    default, other = (RunDir(tmp_path / o / "tiny" / "mlp-bn_lr1x_s0") for o in ("default", "option"))
    key, value = option.split("=")
    assert other.summary()["status"] == "completed" and str(other.config()[key]).lower() == value
    losses = [[r["loss"] for r in d.metrics("train")] for d in (default, other)]
    assert losses[1] == pytest.approx(losses[0], rel=rel)
    assert [p["step"] for p in other.probes()] == [p["step"] for p in default.probes()] == [5, 10, 15, 20]
    compiled_graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert (compiled_graphs > 0) == (key == "compile")
    if key == "precision":
        assert losses[1] != losses[0]  # bf16 really ran


def test_foreach_optimizers_compute_what_the_per_parameter_loop_computes():
    """make_optimizer uses foreach kernels for speed; results must stay bitwise those of the plain loop
    (the committed results were made with it)."""
    from bnexp.config import OptimizerConfig
    from bnexp.train import make_optimizer

    for cfg in (
        OptimizerConfig(name="adam", lr=1e-2, weight_decay=1e-3),
        OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-3),
    ):
        torch.manual_seed(0)
        params = [torch.randn(s, requires_grad=True) for s in ((6, 1, 5, 5), (6,), (120, 400), (10,))]
        twins = [p.detach().clone().requires_grad_() for p in params]
        fast = make_optimizer(cfg, iter(params), cfg.lr)
        loop = type(fast)(twins, **{**fast.defaults, "foreach": False})
        for _ in range(5):
            for group in (params, twins):
                for p in group:
                    p.grad = torch.sin(p.detach() * 3)  # the same deterministic "gradient" for both
            fast.step()
            loop.step()
        assert all(torch.equal(a, b) for a, b in zip(params, twins, strict=True))


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("step", -1_000_000, "step -1000000 is not an integer in [0, "),
        ("step", 10**9, "is not an integer in [0, "),
        ("batch_in_epoch", "x", "batch_in_epoch"),
        ("window_losses", torch.zeros(10_000), "window_losses"),
        ("log_offsets", {"metrics.jsonl": -5}, "log_offsets"),
        ("segments", [{"from_step": 0, "torch_threads": 10**6, "processes": 1}], "torch_threads 1..1024"),
    ],
)
def test_checkpoint_fields_are_checked_before_they_are_used(tiny_config, tiny_root, tmp_path, field, value, words):
    """Issue 19, item 9: a checkpoint from someone else's results folder may say anything."""
    out = tmp_path / "out"
    overrides = ["models=[{name: lenet5, norm: none}]", "steps=4", "epochs=null", "eval_every=2", "seeds=[0]"]
    cfg = load_config(tiny_config, overrides)
    assert run_experiment(cfg, out, PlainReporter(), tiny_root, keep_checkpoints=True) == 0
    run = RunDir(out / "tiny" / "lenet5_lr1x_s0")
    state = torch.load(run.path / "checkpoint-step00000002.pt", weights_only=True)
    state[field] = value
    torch.save(state, run.path / "checkpoint.pt")
    (run.path / "summary.json").unlink()  # unfinished: the next run resumes from the checkpoint
    threads = torch.get_num_threads()
    assert run_experiment(cfg, out, PlainReporter(), tiny_root) == 1
    assert torch.get_num_threads() == threads
    summary = run.summary()
    assert summary["status"] == "failed" and words in summary["error"] and "--restart-run" in summary["error"]


def test_torch_threads_sets_the_count_inside_and_restores_it_even_after_an_error():
    before = torch.get_num_threads()
    with train.torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    with pytest.raises(RuntimeError), train.torch_threads(before + 2):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_a_run_stopped_before_its_first_evaluation_counts_its_training_time_and_says_where_it_stopped(
    tiny_config, tiny_root, tmp_path
):
    """Issue 38, item 5: a run stopped at step 5 (its first evaluation at 10) records the time it trained, in a
    timing record written before its checkpoint, which its resumed run keeps; its summary's outcome is
    interrupted, and its end line says where it stopped. The metrics stay those of an uninterrupted run."""
    import io

    class StopAfterFirstWindow(PlainReporter):
        def advance(self, steps, loss):
            stop.request(15)  # as SIGTERM does: the run stops at the next step

    overrides = ["models=[{name: lenet5}]"]
    name = "lenet5-bn_lr1x_s0"
    assert run(tiny_config, tmp_path / "whole", tiny_root, overrides) == 0
    stop, out = train.StopRequest(), io.StringIO()
    cfg = load_config(tiny_config, overrides)
    assert run_experiment(cfg, tmp_path / "parts", StopAfterFirstWindow(out), tiny_root, stop=stop) == 143
    part = RunDir(tmp_path / "parts" / "tiny" / name)
    summary = part.summary()
    assert summary["status"] == "interrupted" and summary["outcome"] == "interrupted" and summary["steps"] == 5
    assert [t["step"] for t in part.timings()] == [5] and summary["train_time_s"] > 0
    assert f"{name}: interrupted at step 5 of 20 (run the same command again to resume)" in out.getvalue()
    assert "final test_acc" not in out.getvalue()
    assert run(tiny_config, tmp_path / "parts", tiny_root, overrides) == 0  # resumed
    whole = RunDir(tmp_path / "whole" / "tiny" / name)
    assert (part.path / "metrics.jsonl").read_bytes() == (whole.path / "metrics.jsonl").read_bytes()
    timings, summary = part.timings(), part.summary()
    assert [t["step"] for t in timings] == [5, 10, 20] and summary["outcome"] == "trained"
    assert summary["train_time_s"] == pytest.approx(sum(t["train_time_s"] for t in timings))


def test_a_run_killed_before_its_final_weights_were_written_writes_them_on_resume(tiny_config, tiny_root, tmp_path):
    """Issue 37, item 2: SIGKILL after the final checkpoint, while weights.pt was being written: the resumed run
    ended 'completed' without weights. They are the final checkpoint's model, written on resume."""
    overrides = ["models=[{name: lenet5}]", "epochs=1", "keep_final_weights=true"]
    assert run(tiny_config, tmp_path, tiny_root, overrides) == 0
    folder = tmp_path / "tiny" / "lenet5-bn_lr1x_s0"
    weights = torch.load(folder / "weights.pt", weights_only=True)
    (folder / "weights.pt").unlink()
    (folder / "summary.json").unlink()  # killed before the summary: the run resumes from its final checkpoint
    assert run(tiny_config, tmp_path, tiny_root, overrides) == 0
    again = torch.load(folder / "weights.pt", weights_only=True)
    assert all(torch.equal(weights[k], again[k]) for k in weights)
    assert RunDir(folder).summary()["status"] == "completed"


def test_a_link_planted_in_place_of_a_running_runs_folder_takes_no_write_outside(
    tiny_config, tiny_root, tmp_path, monkeypatch
):
    """Issue 37, item 1: the run folder moved aside and a link to a folder outside --out put in its place once the
    run has started: its checkpoint and a 'completed' summary landed outside. The folder is checked before each
    write by path: the run fails, and nothing is written outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    real = train.Trainer._evaluate
    swapped = []

    def evaluate_then_plant(self, train_time):
        real(self, train_time)
        if not swapped:
            self.run.path.rename(tmp_path / "aside")
            self.run.path.symlink_to(outside)
            swapped.append(True)

    monkeypatch.setattr(train.Trainer, "_evaluate", evaluate_then_plant)
    code = run(tiny_config, tmp_path / "out", tiny_root, ["models=[{name: lenet5}]"])
    assert code == 1 and swapped
    assert list(outside.iterdir()) == []


def test_a_loss_that_is_not_finite_or_above_the_ceiling_is_where_a_run_diverged():
    from bnexp.training.loss_window import first_divergent

    nan, inf = float("nan"), float("inf")
    assert first_divergent([2.3, 1.0], None) is None
    assert first_divergent([2.3, nan, 1.0], None) == 1
    assert first_divergent([2.3, 1.0, -inf], 10.0) == 2
    assert first_divergent([2.3, 11.0, nan], 10.0) == 1
    assert first_divergent([11.0], None) is None  # no ceiling configured


def test_the_loss_window_empties_when_read_and_continues_from_a_checkpoints_losses():
    from bnexp.distributed import World
    from bnexp.training.loss_window import LossWindow

    window = LossWindow(3, torch.device("cpu"))
    for value in (1.0, 2.0):
        window.add(torch.tensor(value, requires_grad=True) * 1)
    saved = window.values().clone()
    assert not window.full
    assert window.read(False, World()) == ([1.0, 2.0], False) and window.count == 0
    window.restore(saved)
    window.add(torch.tensor(3.0))
    # one process: a stop request is the caller's to act on at once, not a decision agreed at the window
    assert window.full and window.read(True, World()) == ([1.0, 2.0, 3.0], False)


def test_a_summary_records_each_batch_norms_conventions_from_the_table_of_norms():
    """Issue 32: how a norm takes the batch's variance and the running one is a column of NORMS (BN's by default),
    not a table beside it."""
    from bnexp.config import BATCH_NORMS, ModelConfig
    from bnexp.training.summary import bn_conventions

    def conventions(norm):
        out = bn_conventions(ModelConfig(name="lenet5", norm=norm))
        return out["train_variance"], out["running_variance"]

    assert conventions("batchnorm") == ("biased (divide by m)", "unbiased (m / (m - 1))")
    assert conventions("l1_batchnorm")[0].endswith("s = mean absolute deviation of the centred batch per channel")
    assert conventions("linf_batchnorm")[1] == "running_var is the running average of s^2 (no m / (m - 1) factor)"
    assert conventions("decorrelated_batchnorm")[0].startswith("whitened: Sigma^(-1/2)")
    assert all(conventions(n) == (NORMS[n].train_variance, NORMS[n].running_variance) for n in BATCH_NORMS)
