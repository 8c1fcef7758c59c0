"""Probes measure without changing the run: their maths against direct computations on a tiny model, and the
byte-for-byte identity of a run with and without them."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnexp.config import IcsConfig, LandscapeConfig, ModelConfig, ProbeConfig
from bnexp.models import InputSpec, build_model
from bnexp.nn import BatchNorm
from bnexp.probes.dead_units import dead_units
from bnexp.probes.distributions import Probes
from bnexp.probes.ics import IcsProbe
from bnexp.probes.landscape import LandscapeProbe
from bnexp.probes.weights import WeightNorms
from bnexp.progress import PlainReporter
from bnexp.runner import run_experiment
from bnexp.store import RunDir
from bnexp.validate import load

from .conftest import TINY_CONFIG


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), BatchNorm(8), nn.ReLU(), nn.Linear(8, 3))


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)


def loss_grad(model: nn.Module, x, y, params=None):
    params = list(model.parameters()) if params is None else params
    loss = F.cross_entropy(model(x), y)
    return loss.item(), torch.autograd.grad(loss, params)


def test_landscape_probe_matches_a_direct_computation():
    model, (x, y) = tiny_model(), batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = LandscapeProbe(LandscapeConfig(every_steps=1, etas=[0.5, 1.0, 2.0]), lr=0.1)
    record = probe.measure(model, optimizer, x, y, "fp32")[0]
    assert probe.etas == [0.05, 0.1, 0.2]
    reference = copy.deepcopy(model)
    loss0, g = loss_grad(copy.deepcopy(reference), x, y)
    g_flat = torch.cat([t.flatten() for t in g])
    losses, diffs, betas = [], [], []
    for eta in probe.etas:
        moved = copy.deepcopy(reference)
        with torch.no_grad():
            for p, gp in zip(moved.parameters(), g, strict=True):
                p.sub_(eta * gp)
        loss, g_eta = loss_grad(moved, x, y)
        diff = (torch.cat([t.flatten() for t in g_eta]) - g_flat).norm().item()
        losses.append(loss)
        diffs.append(diff)
        betas.append(diff / (eta * g_flat.norm().item()))
    assert record["loss"] == pytest.approx(loss0, rel=1e-6)
    assert record["losses"] == pytest.approx(losses, rel=1e-5)
    assert record["loss_min"] == pytest.approx(min(losses), rel=1e-5)
    assert record["loss_max"] == pytest.approx(max(losses), rel=1e-5)
    assert record["grad_predictiveness"] == pytest.approx(max(diffs), rel=1e-4)
    assert record["beta_smoothness"] == pytest.approx(max(betas), rel=1e-4)


def test_ics_probe_matches_a_direct_computation():
    model, (x, y) = tiny_model(), batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    record = IcsProbe(IcsConfig(every_steps=1)).measure(model, optimizer, x, y, "fp32")[0]
    assert record["layers"] == ["0", "3"]
    ref = copy.deepcopy(model)
    before = torch.autograd.grad(F.cross_entropy(ref(x), y), [ref[0].weight, ref[3].weight])
    stepped = copy.deepcopy(ref)
    opt = torch.optim.SGD(stepped.parameters(), lr=0.1, momentum=0.9)
    F.cross_entropy(stepped(x), y).backward()
    opt.step()
    # layer 2 (index 3) with everything before it updated: params 0..(index of model[3].weight) - 1
    mixed = copy.deepcopy(ref)
    with torch.no_grad():
        for (name, p), (_, q) in zip(mixed.named_parameters(), stepped.named_parameters(), strict=True):
            if not name.startswith("3."):
                p.copy_(q)
    after = torch.autograd.grad(F.cross_entropy(mixed(x), y), [mixed[3].weight])[0]
    assert record["shift"][0] == 0.0 and record["cosine"][0] == pytest.approx(1.0)
    assert record["shift"][1] == pytest.approx((before[1] - after).norm().item(), rel=1e-5)
    assert record["cosine"][1] == pytest.approx(
        F.cosine_similarity(before[1].flatten(), after.flatten(), dim=0).item(), rel=1e-5
    )


def test_probes_leave_model_optimizer_and_rng_untouched():
    model, (x, y) = tiny_model(), batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    state = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()), torch.get_rng_state()
    LandscapeProbe(LandscapeConfig(every_steps=1), lr=0.01).measure(model, optimizer, x, y, "fp32")
    IcsProbe(IcsConfig(every_steps=1)).measure(model, optimizer, x, y, "fp32")
    for k, v in state[0].items():
        assert torch.equal(model.state_dict()[k], v), k
    assert str(optimizer.state_dict()) == str(state[1])
    assert torch.equal(torch.get_rng_state(), state[2])


@pytest.mark.parametrize("norm", ["batchnorm", "none", "noisy_batchnorm", "batchrenorm"])
def test_a_run_with_probes_equals_the_run_without_byte_for_byte(norm, tiny_root, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(TINY_CONFIG.replace("epochs: 2", "epochs: 2\ncheckpoint_every: 1000"))
    models = f"models=[{{name: lenet5, norm: {norm}}}]"
    probes = ["landscape_probe={every_steps: 3, etas: [0.5, 2]}", "ics_probe={every_steps: 4}", "weight_norms=true"]
    for out, extra in ((tmp_path / "plain", []), (tmp_path / "probed", probes)):
        cfg = load(config, [models, "keep_final_weights=true", *extra])
        assert run_experiment(cfg, out, PlainReporter(), tiny_root) == 0
    name = next(p.name for p in (tmp_path / "plain" / "tiny").iterdir() if p.is_dir())
    a, b = tmp_path / "plain" / "tiny" / name, tmp_path / "probed" / "tiny" / name
    assert (a / "metrics.jsonl").read_bytes() == (b / "metrics.jsonl").read_bytes()
    assert (a / "weights.pt").is_file()
    wa, wb = (torch.load(p / "weights.pt", weights_only=True) for p in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    kinds = {line.split('"probe": "')[1].split('"')[0] for line in (b / "probes.jsonl").read_text().splitlines()}
    assert kinds == {"landscape", "ics", "weights"}
    # what the probes cost is part of the run's timing: within training time, zero without probes
    plain, probed = RunDir(a).timings(), RunDir(b).timings()
    assert all(t["probe_time_s"] == 0 for t in plain)
    assert all(0 < t["probe_time_s"] < t["train_time_s"] for t in probed)


def test_dead_units_counts_channels_that_are_never_positive():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5), nn.ReLU())
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([-100.0, -100.0, 100.0, 100.0]))  # two channels dead for any input
        model[3].bias.fill_(-1000.0)
    counts = dead_units(model, torch.randn(8, 1, 6, 6))
    assert counts.tolist() == [[2, 5], [4, 5]]


def test_weight_norms_and_effective_steps():
    model = tiny_model()
    norms = WeightNorms(model)
    before = norms.snapshot()
    with torch.no_grad():
        model[0].weight.mul_(2.0)
    record = norms.measure(before)[0]
    assert record["layers"] == ["0", "3"]
    assert record["effective_step"][0] == pytest.approx(1.0) and record["effective_step"][1] == 0.0
    assert record["weight_norm"][0] == pytest.approx(model[0].weight.norm().item())


def test_distribution_probes_at_the_first_step_of_an_epoch():
    model = build_model(ModelConfig(name="lenet5"), InputSpec(1, 28, 28, 10))
    first = Probes(ProbeConfig(at_epochs=[1, 3], epoch_position="first"), model, steps_per_epoch=10)
    last = Probes(ProbeConfig(at_epochs=[1, 3]), model, steps_per_epoch=10)
    assert [s for s in range(1, 40) if first.due(s)] == [1, 21]
    assert [s for s in range(1, 40) if last.due(s)] == [10, 30]
