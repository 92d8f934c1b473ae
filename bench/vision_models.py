"""Real-size ImageNet classifiers in plain PyTorch, for benchmarking the gates at production scale.

ResNet-50 (v1.5: stride on the 3x3 convolution), MobileNetV2 (width 1.0) and
EfficientNet-B0, layer for layer as published, so parameter counts, FLOPs and
operator mix match the models the gate policy's thresholds were chosen for.
Weights are random (nothing is downloaded); `calibrate_batch_norm` gives the
normalisation layers statistics of real activations so that logits stay finite
and predictions spread over classes, as a trained model's would.
Only torch is imported: the lead runs these on machines without torchvision or Django.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

NUM_CLASSES = 1000
IMAGE_SHAPE = (3, 224, 224)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, *, groups: int = 1, eps: float = 1e-5) -> list:
    return [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=eps),
    ]


# ------------------------------------------------------------------ ResNet-50


class _Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, plus a projected shortcut when shapes change."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            *_conv_bn(cin, width, 1), nn.ReLU(inplace=True),
            *_conv_bn(width, width, 3, stride), nn.ReLU(inplace=True),
            *_conv_bn(width, cout, 1),
        )
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(*_conv_bn(cin, cout, 1, stride))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet50(nn.Module):
    """ResNet-50: a 7x7 stem, four stages of 3, 4, 6 and 3 bottlenecks, average pool, one linear layer."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn(3, 64, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1)]
        cin = 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for index in range(blocks):
                layers.append(_Bottleneck(cin, width, stride if index == 0 else 1))
                cin = width * _Bottleneck.expansion
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


# ------------------------------------------------------------------ MobileNetV2


class _InvertedResidual(nn.Module):
    """Expand by `expand` (1x1, ReLU6), depthwise 3x3 (ReLU6), linear 1x1 projection; residual when shapes keep."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [*_conv_bn(cin, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [
            *_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(inplace=True),
            *_conv_bn(hidden, cout, 1),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 at width 1.0: the paper's table of (expansion, channels, repeats, stride), a 1280-wide head."""

    STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn(3, 32, 3, 2), nn.ReLU6(inplace=True)]
        cin = 32
        for expand, cout, repeats, stride in self.STAGES:
            for index in range(repeats):
                layers.append(_InvertedResidual(cin, cout, stride if index == 0 else 1, expand))
                cin = cout
        layers += [*_conv_bn(cin, 1280, 1), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


# ------------------------------------------------------------------ EfficientNet-B0

_EFFICIENTNET_BN_EPS = 1e-3


class _SqueezeExcite(nn.Module):
    """Channel gates from a global average: reduce to `squeeze` channels (SiLU), expand back (sigmoid), scale."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.expand(nn.functional.silu(self.reduce(gate))))


class _MBConv(nn.Module):
    """EfficientNet's block: inverted residual with SiLU and squeeze-excitation to a quarter of its input width."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        eps = _EFFICIENTNET_BN_EPS
        layers = [] if expand == 1 else [*_conv_bn(cin, hidden, 1, eps=eps), nn.SiLU(inplace=True)]
        layers += [
            *_conv_bn(hidden, hidden, kernel, stride, groups=hidden, eps=eps), nn.SiLU(inplace=True),
            _SqueezeExcite(hidden, max(1, cin // 4)),
            *_conv_bn(hidden, cout, 1, eps=eps),
        ]
        self.body = nn.Sequential(*layers)
        # Stochastic depth only acts in training; at inference the residual is a plain sum.
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class EfficientNetB0(nn.Module):
    """EfficientNet-B0: the baseline found by search, (expansion, kernel, stride, out channels, repeats) per stage."""

    STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
              (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        eps = _EFFICIENTNET_BN_EPS
        layers: list[nn.Module] = [*_conv_bn(3, 32, 3, 2, eps=eps), nn.SiLU(inplace=True)]
        cin = 32
        for expand, kernel, stride, cout, repeats in self.STAGES:
            for index in range(repeats):
                layers.append(_MBConv(cin, cout, kernel, stride if index == 0 else 1, expand))
                cin = cout
        layers += [*_conv_bn(cin, 1280, 1, eps=eps), nn.SiLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


# ------------------------------------------------------------------ catalogue

# Name -> (constructor, published parameter count).
ARCHITECTURES: dict[str, tuple[Callable[[], nn.Module], int]] = {
    "resnet50": (ResNet50, 25_557_032),
    "mobilenetv2": (MobileNetV2, 3_504_872),
    "efficientnetb0": (EfficientNetB0, 5_288_548),
}


def build(name: str, *, seed: int = 0) -> nn.Module:
    """A freshly initialised architecture by name, in eval mode, the same weights for the same seed."""
    constructor, _ = ARCHITECTURES[name]
    torch.manual_seed(seed)
    return constructor().eval()


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def calibrate_batch_norm(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Set every BatchNorm's running statistics to those of `images`' activations, then back to eval.

    Random weights with the default statistics (mean 0, variance 1) let
    activations grow layer after layer until the logits are meaningless; one
    pass in training mode with a cumulative average fixes that.
    """
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the pass
    model.train()
    model(images)
    return model.eval()
