from __future__ import annotations

import pytest
import torch
from torch import nn

from bnexp.config import NORMS, ModelConfig
from bnexp.models import MODELS, InputSpec, build_model
from bnexp.nn import BatchNorm, BatchRenorm, DecorrelatedBatchNorm, LpBatchNorm, NaiveBatchNorm, NoisyBatchNorm

MNIST_LIKE = InputSpec(1, 28, 28, 10)


def layer_types(model: nn.Module) -> list[str]:
    return [type(m).__name__ for m in model.modules() if not isinstance(m, (nn.Sequential,)) and m is not model]


def test_registry_has_lenet5():
    assert "lenet5" in MODELS


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_builds_and_classifies(name):
    """Each entry of the registry is a builder of a classifier for the config's input shape (AlexNet's 11x11
    stride-4 first conv needs more than 28x28 pixels)."""
    inputs = InputSpec(3, 67, 67, 10) if name == "alexnet" else MNIST_LIKE
    model = build_model(ModelConfig(name=name, norm="none"), inputs)
    logits = model(torch.zeros(2, inputs.channels, inputs.height, inputs.width))
    assert logits.shape == (2, inputs.num_classes)


def test_lenet5_structure_matches_the_article():
    model = build_model(ModelConfig(name="lenet5", norm="none"), MNIST_LIKE)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 6, (5, 5), (2, 2)),
        (6, 16, (5, 5), (0, 0)),
    ]
    assert [(f.in_features, f.out_features) for f in fcs] == [(400, 120), (120, 84), (84, 10)]
    assert sum(p.numel() for p in model.parameters()) == 61706  # the classic LeNet5 count


def test_batchnorm_after_every_layer_but_the_last_and_before_the_activation():
    model = build_model(ModelConfig(name="lenet5", norm="batchnorm"), MNIST_LIKE)
    types = layer_types(model)
    assert types == [
        "Conv2d",
        "BatchNorm",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "BatchNorm",
        "ReLU",
        "MaxPool2d",
        "Linear",
        "BatchNorm",
        "ReLU",
        "Linear",
        "BatchNorm",
        "ReLU",
        "Linear",
    ]
    assert [m.num_features for m in model.modules() if isinstance(m, BatchNorm)] == [6, 16, 120, 84]


def test_sigmoid_activation():
    model = build_model(ModelConfig(name="lenet5", activation="sigmoid"), MNIST_LIKE)
    assert sum(isinstance(m, nn.Sigmoid) for m in model.modules()) == 4
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())


@pytest.mark.parametrize("norm", NORMS)
def test_every_norm_builds_and_runs(norm):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="lenet5", norm=norm), MNIST_LIKE)
    out = model(torch.randn(4, 1, 28, 28))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.sum().backward()
    expected = {
        "batchnorm": BatchNorm,
        "naive_batchnorm": NaiveBatchNorm,
        "torch_batchnorm": nn.BatchNorm2d,
        "groupnorm": nn.GroupNorm,
        "layernorm": nn.GroupNorm,
        "instancenorm": nn.GroupNorm,
        "batchrenorm": BatchRenorm,
        "noisy_batchnorm": NoisyBatchNorm,
        "l1_batchnorm": LpBatchNorm,
        "linf_batchnorm": LpBatchNorm,
        "decorrelated_batchnorm": DecorrelatedBatchNorm,
    }
    if norm in expected:
        assert any(type(m) is expected[norm] for m in model.modules())
        assert all(m.p == NORMS[norm].p for m in model.modules() if isinstance(m, LpBatchNorm))
    else:
        assert not any(isinstance(m, (nn.BatchNorm2d, BatchNorm, nn.GroupNorm)) for m in model.modules())


def test_norm_options_reach_the_layers():
    model = build_model(ModelConfig(name="lenet5", bn_momentum=None, bn_eps=1e-3, affine=False), MNIST_LIKE)
    bns = [m for m in model.modules() if isinstance(m, BatchNorm)]
    assert all(m.momentum is None and m.eps == 1e-3 and m.weight is None for m in bns)


def test_other_input_shapes():
    model = build_model(ModelConfig(name="lenet5"), InputSpec(3, 32, 32, 100))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_the_bias_before_a_batch_norm_gets_no_gradient(activation):
    """a3: the bias of a layer followed by BN is redundant: BN subtracts each channel's batch mean, and with it
    any constant, so the loss does not depend on it (zero gradient up to rounding; the output layer's is not).
    The identity behind the claims bias-redundant-relu and bias-redundant-sigmoid."""
    torch.manual_seed(0)
    cfg = ModelConfig(name="lenet5", norm="batchnorm", activation=activation)
    model = build_model(cfg, MNIST_LIKE).double().train()
    x, y = torch.randn(16, 1, 28, 28, dtype=torch.float64), torch.arange(16) % 10
    nn.functional.cross_entropy(model(x), y).backward()
    before_bn = [model.features[0], model.features[4], model.head[0], model.head[3]]
    assert all(m.bias.grad.abs().max() < 1e-12 * m.weight.grad.abs().max() for m in before_bn)
    assert model.head[6].bias.grad.abs().max() > 1e-6  # no BN after the output layer: its bias matters


def test_groupnorm_is_one_computation_in_train_and_eval_mode_and_per_image():
    """GroupNorm normalizes each image over its own channels: training and evaluation mode are the same
    computation, and an image's output does not depend on the rest of its batch (one class or shuffled). The
    identity behind the claim a2-groupnorm-unaffected."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="lenet5", norm="groupnorm", groups=2), MNIST_LIKE).double()
    x = torch.randn(8, 1, 28, 28, dtype=torch.float64)
    same_image = x[:1].expand(8, -1, -1, -1)  # the most homogeneous batch there is
    with torch.no_grad():
        train = model.train()(x)
        evaluated = model.eval()(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(8)])
        in_copies = model(same_image)
    assert torch.equal(train, evaluated)
    assert torch.allclose(alone, evaluated, rtol=0, atol=1e-12)
    assert torch.allclose(in_copies, evaluated[:1].expand(8, -1), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "norm", ["batchnorm", "noisy_batchnorm", "torch_batchnorm", "batchrenorm", "groupnorm", "none"]
)
def test_bias_before_norm_false_drops_only_the_biases_a_batch_norm_cancels(norm):
    torch.manual_seed(0)
    with_bias = build_model(ModelConfig(name="lenet5", norm=norm), MNIST_LIKE).double().train()
    torch.manual_seed(0)
    without = build_model(ModelConfig(name="lenet5", norm=norm, bias_before_norm=False), MNIST_LIKE).double().train()
    dropped = [name for name, _ in with_bias.named_parameters() if name not in dict(without.named_parameters())]
    cancelled = norm in ("batchnorm", "noisy_batchnorm", "torch_batchnorm")  # Batch Renorm's d sees the bias
    assert dropped == (["features.0.bias", "features.4.bias", "head.0.bias", "head.3.bias"] if cancelled else [])
    if norm != "noisy_batchnorm":  # its noise is random per call: the same output only for the same draw
        x = torch.randn(8, 1, 28, 28, dtype=torch.float64)
        assert torch.allclose(with_bias(x), without(x), atol=1e-10)


def test_weight_norm_starts_from_the_same_function_and_spectral_norm_bounds_sigma_max():
    torch.manual_seed(0)
    plain = build_model(ModelConfig(name="lenet5", norm="none"), MNIST_LIKE)
    torch.manual_seed(0)
    wn = build_model(ModelConfig(name="lenet5", norm="weightnorm"), MNIST_LIKE)
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(plain(x), wn(x), atol=1e-5)  # g starts at ||v||: the same weights
    assert len(list(wn.parameters())) == len(list(plain.parameters())) + 5  # one g per conv/fc layer
    sn = build_model(ModelConfig(name="lenet5", norm="spectralnorm"), MNIST_LIKE).train()
    for _ in range(30):  # each training forward runs one power iteration
        sn(x)
    sigmas = [
        torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item()
        for m in sn.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    assert len(sigmas) == 5 and all(abs(s - 1) < 0.05 for s in sigmas), sigmas
    # its power-iteration vectors are state: a model loaded from the state dict continues identically
    again = build_model(ModelConfig(name="lenet5", norm="spectralnorm"), MNIST_LIKE).train()
    again.load_state_dict(sn.state_dict())
    assert torch.equal(again(x), sn(x))


def test_dropout_follows_each_hidden_fc_layer_and_is_refused_where_a_model_has_none():
    inputs = MNIST_LIKE
    for name, hidden in (("lenet5", 2), ("mlp", 3)):
        model = build_model(ModelConfig(name=name, norm="batchnorm", dropout=0.5), inputs)
        assert sum(isinstance(m, torch.nn.Dropout) for m in model.modules()) == hidden
        assert not any(isinstance(m, torch.nn.Dropout) for m in build_model(ModelConfig(name=name), inputs).modules())
    with pytest.raises(ValueError, match="convnet4 has no hidden fc layers"):
        build_model(ModelConfig(name="convnet4", dropout=0.5), inputs)


def test_the_norm_sits_before_the_activation_unless_the_config_puts_it_after():
    kinds = lambda model: [type(m).__name__ for m in model.features][:3]  # noqa: E731
    before = build_model(ModelConfig(name="lenet5", norm="batchnorm"), MNIST_LIKE)
    after = build_model(ModelConfig(name="lenet5", norm="batchnorm", norm_position="after_activation"), MNIST_LIKE)
    assert kinds(before) == ["Conv2d", "BatchNorm", "ReLU"] and kinds(after) == ["Conv2d", "ReLU", "BatchNorm"]
    assert [type(m).__name__ for m in after.head][:3] == ["Linear", "ReLU", "BatchNorm"]
    assert ModelConfig(name="lenet5", norm="batchnorm", norm_position="after_activation").tag == "lenet5-bn-postact"
    after.train()(torch.randn(4, 1, 28, 28)).sum().backward()
    with pytest.raises(ValueError, match="lstm normalizes"):
        build_model(ModelConfig(name="lstm", norm="batchnorm", norm_position="after_activation"), MNIST_LIKE)
