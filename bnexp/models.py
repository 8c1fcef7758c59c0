"""Models: `MODELS`, at the end, maps each config `name` to its builder. Every normalization layer comes from
`bnexp.nn.norm_factory`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from bnexp.config import WEIGHT_NORMS, ModelConfig
from bnexp.nn import BatchNorm, BatchRenorm, NormFactory, norm_factory
from bnexp.nn.recurrent import RECURRENT_NORMS, NormLSTM


@dataclass(frozen=True)
class InputSpec:
    """What a model needs to know about the data: image shape and number of classes."""

    channels: int
    height: int
    width: int
    num_classes: int


ModelBuilder = Callable[[ModelConfig, InputSpec], nn.Module]


def build_model(cfg: ModelConfig, inputs: InputSpec) -> nn.Module:
    model = MODELS[cfg.name](cfg, inputs)
    if cfg.dropout and not any(isinstance(m, nn.Dropout) for m in model.modules()):
        raise ValueError(f"dropout: {cfg.name} has no hidden fc layers to drop units of (lenet5, mlp and alexnet have)")
    if cfg.init_std is not None:
        gaussian_init(model, cfg.init_std)
    if not cfg.bias_before_norm:
        drop_biases_before_batch_norms(model)
    if cfg.norm in WEIGHT_NORMS:
        reparametrize_weights(model, cfg.norm)
    return model


def reparametrize_weights(model: nn.Module, norm: str) -> None:
    """Every conv and fc layer, the output layer included, through torch's own parametrizations: weight norm
    (Salimans & Kingma 2016: w = g · v / ‖v‖ per output unit) or spectral norm (Miyato et al. 2018: W / σ_max(W),
    σ_max by one power iteration per training forward). Called after any custom init, which they then start from."""
    wrap = nn.utils.parametrizations.weight_norm if norm == "weightnorm" else nn.utils.parametrizations.spectral_norm
    for m in list(model.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            wrap(m)


def gaussian_init(model: nn.Module, std: float) -> None:
    """N(0, std) weights and zero biases for every conv and fc layer (the BN paper's MNIST init)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def cancels_a_bias(norm: nn.Module) -> bool:
    """Whether the norm's training output is the same for any constant added to each channel: batch norms subtract
    each channel's batch mean (noisy BN adds its noise after that). Not Batch Renorm, whose correction d depends on
    the batch mean, nor GroupNorm or LayerNorm, whose means mix channels."""
    return isinstance(norm, (BatchNorm, nn.BatchNorm1d, nn.BatchNorm2d)) and not isinstance(norm, BatchRenorm)


def drop_biases_before_batch_norms(model: nn.Module) -> None:
    """Remove the bias of every conv/fc layer whose output goes straight into a norm that cancels it (a3: the
    bias before BN is redundant)."""
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            for layer, after in zip(list(seq)[:-1], list(seq)[1:], strict=True):
                if isinstance(layer, (nn.Conv2d, nn.Linear)) and cancels_a_bias(after):
                    layer.register_parameter("bias", None)


def activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}[name]()


def flat_features(features: nn.Module, inputs: InputSpec) -> int:
    """Size of `features`' output for one input image (traced once at build time, on CPU)."""
    with torch.no_grad():
        was_training = features.training
        out = features.eval()(torch.zeros(1, inputs.channels, inputs.height, inputs.width))
        features.train(was_training)
    return out.numel()


@dataclass(frozen=True)
class LayerStyle:
    """How a model's conv and fc blocks are built from its config: the norm, the activation, which of the two
    comes first, and the dropout after each hidden fc layer."""

    norm: NormFactory
    activation: str
    norm_after_activation: bool = False
    dropout: float = 0.0

    @classmethod
    def of(cls, cfg: ModelConfig) -> LayerStyle:
        after = cfg.norm_position == "after_activation"
        return cls(norm_factory(cfg), cfg.activation, after, cfg.dropout)

    def normalized(self, num_features: int, spatial: bool) -> list[nn.Module]:
        """norm -> activation (the BN paper's order), or activation -> norm."""
        pair = [self.norm(num_features, spatial), activation(self.activation)]
        return pair[::-1] if self.norm_after_activation else pair


def conv_block(
    cin: int, cout: int, kernel: int, style: LayerStyle, padding: int = 0, stride: int = 1
) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding), *style.normalized(cout, True)]


def fc_block(fin: int, fout: int, style: LayerStyle) -> list[nn.Module]:
    dropout = [nn.Dropout(style.dropout)] if style.dropout else []
    return [nn.Linear(fin, fout), *style.normalized(fout, False), *dropout]


class Classifier(nn.Module):
    """features (conv stack) -> flatten -> head (fc stack). Layer names are stable for probes."""

    def __init__(self, features: nn.Sequential, head_builder: Callable[[int], nn.Sequential], inputs: InputSpec):
        super().__init__()
        self.features = features
        self.head = head_builder(flat_features(features, inputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def lenet5(cfg: ModelConfig, inputs: InputSpec) -> nn.Module:
    """LeNet5 as in the main article (E1): conv 6@5x5 pad 2, pool, conv 16@5x5, pool, fc 120, fc 84, fc."""
    style = LayerStyle.of(cfg)
    features = nn.Sequential(
        *conv_block(inputs.channels, 6, 5, style, padding=2),
        nn.MaxPool2d(2),
        *conv_block(6, 16, 5, style),
        nn.MaxPool2d(2),
    )
    return Classifier(
        features,
        lambda n: nn.Sequential(
            *fc_block(n, 120, style),
            *fc_block(120, 84, style),
            nn.Linear(84, inputs.num_classes),
        ),
        inputs,
    )


def convnet4(cfg: ModelConfig, inputs: InputSpec) -> nn.Module:
    """The main article's E3 net (bn_can_obtain_more_stable_feature_map.py): four 32-channel 3x3 convs with
    padding 1 (norm after each), each followed by activation and a 2x2 max-pool (28 -> 14 -> 7 -> 3 -> 1 on
    Fashion-MNIST), then fc 32 -> 120 -> 84 -> classes without normalization."""
    style = LayerStyle.of(cfg)
    layers: list[nn.Module] = []
    for i in range(4):
        layers += [*conv_block(inputs.channels if i == 0 else 32, 32, 3, style, padding=1), nn.MaxPool2d(2)]
    return Classifier(
        nn.Sequential(*layers),
        lambda n: nn.Sequential(
            nn.Linear(n, 120),
            activation(style.activation),
            nn.Linear(120, 84),
            activation(style.activation),
            nn.Linear(84, inputs.num_classes),
        ),
        inputs,
    )


def mlp(cfg: ModelConfig, inputs: InputSpec) -> nn.Module:
    """The BN paper's MNIST net (sec. 4.1): 3 fully connected hidden layers of 100 units, norm on each.
    Its N(0, 0.05) initialization is `init_std: 0.05` in the config."""
    style = LayerStyle.of(cfg)
    n_in = inputs.channels * inputs.height * inputs.width
    return nn.Sequential(
        nn.Flatten(),
        *fc_block(n_in, 100, style),
        *fc_block(100, 100, style),
        *fc_block(100, 100, style),
        nn.Linear(100, inputs.num_classes),
    )


def _alexnet(cfg: ModelConfig, inputs: InputSpec, first_kernel: int, first_stride: int, first_pad: int) -> nn.Module:
    style = LayerStyle.of(cfg)
    features = nn.Sequential(
        *conv_block(inputs.channels, 96, first_kernel, style, padding=first_pad, stride=first_stride),
        nn.MaxPool2d(3, 2),
        *conv_block(96, 256, 5, style, padding=2),
        nn.MaxPool2d(3, 2),
        *conv_block(256, 384, 3, style, padding=1),
        *conv_block(384, 384, 3, style, padding=1),
        *conv_block(384, 256, 3, style, padding=1),
        nn.MaxPool2d(3, 2),
    )
    return Classifier(
        features,
        lambda n: nn.Sequential(
            *fc_block(n, 4096, style),
            *fc_block(4096, 4096, style),
            nn.Linear(4096, inputs.num_classes),
        ),
        inputs,
    )


def alexnet(cfg: ModelConfig, inputs: InputSpec) -> nn.Module:
    """AlexNet as in the main article's E5 script (for 224x224 input): conv 96@11x11 stride 4 without padding,
    pool 3 s2, conv 256@5x5, pool, conv 384, 384, 256 @3x3, pool, fc 4096, 4096, classes; `dropout` after each
    hidden fc."""
    return _alexnet(cfg, inputs, first_kernel=11, first_stride=4, first_pad=0)


def alexnet_small(cfg: ModelConfig, inputs: InputSpec) -> nn.Module:
    """AlexNet for native 32x32 input: the same depth and widths, first conv 3x3 stride 1."""
    return _alexnet(cfg, inputs, first_kernel=3, first_stride=1, first_pad=1)


class RowLSTM(nn.Module):
    """Reads an image as a sequence of its rows (H steps of C x W values), classifies from the last hidden state.
    Images of another height are sequences of another length (the long-sequence analysis feeds taller ones)."""

    def __init__(self, cfg: ModelConfig, inputs: InputSpec, hidden: int = 100):
        super().__init__()
        self.rnn = NormLSTM(
            inputs.channels * inputs.width,
            hidden,
            cfg.norm,
            max_steps=inputs.height,  # type: ignore[arg-type]
            eps=cfg.bn_eps,
            momentum=cfg.bn_momentum,
        )
        self.head = nn.Linear(hidden, inputs.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return self.head(self.rnn(x.permute(0, 2, 1, 3).reshape(n, h, c * w)))


def lstm(cfg: ModelConfig, inputs: InputSpec) -> nn.Module:
    """An LSTM of 100 units over the rows of the image (28 steps of 28 values on Fashion-MNIST), with recurrent
    BN (statistics per time step, Cooijmans et al. 2016), LayerNorm (Ba et al. 2016) or no norm on its
    input-to-hidden and hidden-to-hidden terms and its cell state (bnexp.nn.recurrent)."""
    if cfg.norm not in RECURRENT_NORMS:
        raise ValueError(f"lstm takes norm: {', '.join(RECURRENT_NORMS)}; got {cfg.norm!r}")
    if cfg.norm_position != "before_activation":
        raise ValueError("norm_position: the lstm normalizes its gates' terms, before their activations, only")
    return RowLSTM(cfg, inputs)


# the registry: a config's model `name` -> its builder
MODELS: dict[str, ModelBuilder] = {
    "lenet5": lenet5,
    "convnet4": convnet4,
    "mlp": mlp,
    "alexnet": alexnet,
    "alexnet_small": alexnet_small,
    "lstm": lstm,
}
