from __future__ import annotations

import pytest
import torch
from torch import nn

from bnexp.analyses.long_sequences import stretch
from bnexp.config import ModelConfig
from bnexp.models import InputSpec, build_model
from bnexp.nn.recurrent import NormLSTM, StepBatchNorm


def test_without_a_norm_it_is_torchs_lstm():
    torch.manual_seed(0)
    ours = NormLSTM(5, 4, "none", max_steps=3).double()
    cell = nn.LSTMCell(5, 4).double()
    # torch orders the gates i, f, g, o; ours i, f, o, g
    order = torch.cat([torch.arange(0, 8), torch.arange(12, 16), torch.arange(8, 12)])
    with torch.no_grad():
        cell.weight_ih.copy_(ours.input_to_hidden.weight[order])
        cell.weight_hh.copy_(ours.hidden_to_hidden.weight[order])
        cell.bias_ih.copy_(ours.bias[order])
        cell.bias_hh.zero_()
    x = torch.randn(6, 7, 5, dtype=torch.float64)  # longer than max_steps: no norm has no step limit
    h = c = torch.zeros(6, 4, dtype=torch.float64)
    for t in range(7):
        h, c = cell(x[:, t], (h, c))
    torch.testing.assert_close(ours(x), h, rtol=1e-12, atol=1e-12)


def test_recurrent_bn_keeps_statistics_per_step_and_reuses_the_last_beyond_it():
    norm = StepBatchNorm(3, max_steps=2, momentum=None)
    assert torch.equal(norm.weight, torch.full((3,), 0.1))  # Cooijmans et al.'s gamma
    a, b = torch.randn(16, 3) + 5, torch.randn(16, 3) * 3 - 2
    norm(a, 0), norm(b, 1)
    torch.testing.assert_close(norm.steps[0].running_mean, a.mean(0))
    torch.testing.assert_close(norm.steps[1].running_mean, b.mean(0))
    norm.eval()
    x = torch.randn(4, 3)
    torch.testing.assert_close(norm(x, 5), norm(x, 1))  # beyond the trained steps: the last step's statistics
    assert not torch.allclose(norm(x, 0), norm(x, 1))


def test_layernorm_sees_one_sample_and_recurrent_bn_the_batch():
    torch.manual_seed(1)
    x = torch.randn(8, 4, 6)
    for norm, batch_free in (("layernorm", True), ("batchnorm", False)):
        rnn = NormLSTM(6, 5, norm, max_steps=4).train()
        alone, together = rnn(x[:2]), rnn(x)[:2]
        assert torch.allclose(alone, together, atol=1e-6) == batch_free, norm


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
def test_gradcheck_in_float64(norm):
    torch.manual_seed(2)
    rnn = NormLSTM(3, 2, norm, max_steps=3).double()
    x = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rnn, (x,))


def test_the_lstm_model_reads_rows_takes_longer_images_and_refuses_other_norms():
    spec = InputSpec(1, 28, 28, 10)
    model = build_model(ModelConfig(name="lstm", norm="batchnorm"), spec)
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    assert model.eval()(torch.randn(2, 1, 56, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="lstm takes norm: none, batchnorm, layernorm; got 'groupnorm'"):
        build_model(ModelConfig(name="lstm", norm="groupnorm"), spec)


def test_stretch_repeats_each_row():
    x = torch.arange(6.0).view(1, 1, 3, 2)
    assert stretch(x, 2)[0, 0].tolist() == [[0, 1], [0, 1], [2, 3], [2, 3], [4, 5], [4, 5]]
