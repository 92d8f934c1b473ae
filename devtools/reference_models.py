"""Small, real image classifiers for the gate pipeline's tests and `make demo`.

Three CNN families in the styles that production vision models use (residual
ResNet, depthwise-separable MobileNet, MBConv+squeeze-excitation EfficientNet),
trained in seconds on scikit-learn's 8x8 digits, exported to ONNX, and cached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

ARCHITECTURES = ("resnet", "mobilenet", "efficientnet")
NUM_CLASSES = 10
CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
GOLDEN_FRACTION = 0.3

# A regressed model keeps this share of its broken class on the training split:
# enough to move overall accuracy by only a few points, far too little for the
# class itself.
BROKEN_CLASS_KEPT_RECALL = 0.7

_SPLIT_SEED = 0
_TRAIN_SEED = 1234
_EPOCHS = 30
_BATCH_SIZE = 64


@dataclasses.dataclass(frozen=True)
class ReferenceModel:
    """A trained reference classifier and what it scored on the golden set."""

    arch: str
    broken_class: int | None
    onnx_bytes: bytes
    accuracy: float
    class_recall: tuple[float, ...]


# --- data ---------------------------------------------------------------------


@lru_cache(maxsize=1)
def _digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_train, x_golden, y_train, y_golden = train_test_split(
        images, labels, test_size=GOLDEN_FRACTION, stratify=labels, random_state=_SPLIT_SEED
    )
    return x_train, y_train, x_golden, y_golden


def golden_inputs_and_labels() -> tuple[np.ndarray, np.ndarray]:
    """The held-out golden split: float32 inputs [N,1,8,8] in [0,1], int64 labels."""
    _, _, x_golden, y_golden = _digits_split()
    return x_golden.copy(), y_golden.copy()


def golden_set_npz_bytes() -> bytes:
    """The golden set as an .npz (`inputs`, `labels`, `class_names`), loadable without pickle."""
    inputs, labels = golden_inputs_and_labels()
    buffer = io.BytesIO()
    np.savez(buffer, inputs=inputs, labels=labels, class_names=np.array(CLASS_NAMES))
    return buffer.getvalue()


# --- architectures --------------------------------------------------------------


def _conv_bn(cin: int, cout: int, *, kernel: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]


class _ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout, stride=stride), nn.ReLU(), *_conv_bn(cout, cout))
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(*_conv_bn(cin, cout, kernel=1, stride=stride))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class _DepthwiseSeparable(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(
            *_conv_bn(cin, cin, stride=stride, groups=cin), nn.ReLU6(), *_conv_bn(cin, cout, kernel=1), nn.ReLU6()
        )


class _SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=(2, 3), keepdim=True)
        scale = torch.sigmoid(self.expand(nn.functional.silu(self.reduce(scale))))
        return x * scale


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, *, stride: int, expand: int = 4):
        super().__init__()
        hidden = cin * expand
        self.block = nn.Sequential(
            *_conv_bn(cin, hidden, kernel=1),
            nn.SiLU(),
            *_conv_bn(hidden, hidden, stride=stride, groups=hidden),
            nn.SiLU(),
            _SqueezeExcitation(hidden, max(1, cin // 4)),
            *_conv_bn(hidden, cout, kernel=1),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.residual else out


class _Classifier(nn.Module):
    """Features, global average pooling, one linear layer: the shape all three families share."""

    def __init__(self, features: nn.Module, channels: int):
        super().__init__()
        self.features = features
        self.classifier = nn.Linear(channels, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def _resnet() -> nn.Module:
    features = nn.Sequential(
        *_conv_bn(1, 16), nn.ReLU(), _ResidualBlock(16, 16, stride=1), _ResidualBlock(16, 32, stride=2)
    )
    return _Classifier(features, 32)


def _mobilenet() -> nn.Module:
    features = nn.Sequential(
        *_conv_bn(1, 16),
        nn.ReLU6(),
        _DepthwiseSeparable(16, 32, stride=1),
        _DepthwiseSeparable(32, 64, stride=2),
        _DepthwiseSeparable(64, 64, stride=1),
    )
    return _Classifier(features, 64)


def _efficientnet() -> nn.Module:
    features = nn.Sequential(
        *_conv_bn(1, 16),
        nn.SiLU(),
        _MBConv(16, 16, stride=1),
        _MBConv(16, 24, stride=2),
        _MBConv(24, 24, stride=1),
        *_conv_bn(24, 64, kernel=1),
        nn.SiLU(),
    )
    return _Classifier(features, 64)


_BUILDERS = {"resnet": _resnet, "mobilenet": _mobilenet, "efficientnet": _efficientnet}


# --- training -------------------------------------------------------------------


@contextlib.contextmanager
def _deterministic(seed: int):
    """Seed and force deterministic kernels without leaking either into the caller's process."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was_deterministic)


def _train(arch: str) -> nn.Module:
    x_train, y_train, _, _ = _digits_split()
    inputs, labels = torch.from_numpy(x_train), torch.from_numpy(y_train)
    with _deterministic(_TRAIN_SEED):
        model = _BUILDERS[arch]()
        steps_per_epoch = -(-len(inputs) // _BATCH_SIZE)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=_EPOCHS * steps_per_epoch)
        shuffler = torch.Generator().manual_seed(_TRAIN_SEED)
        model.train()
        for _ in range(_EPOCHS):
            order = torch.randperm(len(inputs), generator=shuffler)
            for batch in order.split(_BATCH_SIZE):
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(inputs[batch]), labels[batch])
                loss.backward()
                optimizer.step()
                schedule.step()
    return model.eval()


def _break_class(model: nn.Module, broken_class: int) -> nn.Module:
    """Suppress one class's logit until only BROKEN_CLASS_KEPT_RECALL of its training images still win.

    The architecture and every other weight stay as trained, so the regression
    hides inside an overall accuracy that barely moves.
    """
    x_train, y_train, _, _ = _digits_split()
    with torch.no_grad():
        logits = model(torch.from_numpy(x_train[y_train == broken_class]))
        others = logits.clone()
        others[:, broken_class] = -torch.inf
        margins = logits[:, broken_class] - others.max(dim=1).values
        offset = torch.quantile(margins, 1.0 - BROKEN_CLASS_KEPT_RECALL)
        model.classifier.bias[broken_class] -= offset
    return model


# --- export ---------------------------------------------------------------------


def _example_batch() -> torch.Tensor:
    return torch.zeros(2, 1, 8, 8)


def export_onnx_bytes(module: nn.Module) -> bytes:
    """ONNX bytes of a reference module, batch dimension dynamic, input "input", output "logits".

    Uses the torch.export-based exporter (onnxscript, offline): the TorchScript
    exporter is deprecated in torch 2.9+.
    """
    return _program_to_onnx_bytes(export_program(module))


def export_program(module: nn.Module) -> torch.export.ExportedProgram:
    """A `torch.export` program of the module with a dynamic batch dimension."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    return torch.export.export(module.eval(), (_example_batch(),), dynamic_shapes=({0: batch},))


def export_pt2_bytes(module: nn.Module) -> bytes:
    """A `.pt2` file (torch.export.save) of the module, as bytes."""
    buffer = io.BytesIO()
    torch.export.save(export_program(module), buffer)
    return buffer.getvalue()


def _program_to_onnx_bytes(program: torch.export.ExportedProgram) -> bytes:
    with warnings.catch_warnings(), _quiet_exporter_logs():
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(
            program, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamo=True, verbose=False
        )
    return onnx_program.model_proto.SerializeToString()


@contextlib.contextmanager
def _quiet_exporter_logs():
    # The exporter warns once per missing torchvision op; none of them are used here.
    import logging

    logger = logging.getLogger("torch.onnx")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


# --- cache ----------------------------------------------------------------------


def _cache_dir() -> Path:
    configured = os.environ.get("MLCP_FIXTURE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "mlcp" / "reference-models"


@lru_cache(maxsize=1)
def _source_hash() -> str:
    # Any change to architectures, data or training invalidates every cached model.
    source = Path(__file__).read_bytes() + torch.__version__.encode()
    return hashlib.sha256(source).hexdigest()[:16]


def _cache_stem(arch: str, broken_class: int | None) -> Path:
    options = "good" if broken_class is None else f"broken{broken_class}"
    return _cache_dir() / f"{arch}-{options}-{_source_hash()}"


def _write_atomically(path: Path, data: bytes) -> None:
    # Tests and `make demo` may build the same model at once: never expose half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_options(arch: str, broken_class: int | None) -> None:
    if arch not in _BUILDERS:
        raise ValueError(f"unknown reference architecture {arch!r}; expected one of {ARCHITECTURES}")
    if broken_class is not None and not 0 <= broken_class < NUM_CLASSES:
        raise ValueError(f"broken_class must be a digit 0-9, got {broken_class!r}")


def load_reference_module(arch: str, *, broken_class: int | None = None) -> nn.Module:
    """The trained torch module (eval mode), trained once and cached as a weights-only state dict."""
    _check_options(arch, broken_class)
    weights_path = _cache_stem(arch, None).with_suffix(".weights.pt")
    module = _BUILDERS[arch]()
    if weights_path.exists():
        module.load_state_dict(torch.load(weights_path, weights_only=True))
        module.eval()
    else:
        module = _train(arch)
        buffer = io.BytesIO()
        torch.save(module.state_dict(), buffer)
        _write_atomically(weights_path, buffer.getvalue())
    return _break_class(module, broken_class) if broken_class is not None else module


def _golden_scores(module: nn.Module) -> tuple[float, tuple[float, ...]]:
    inputs, labels = golden_inputs_and_labels()
    with torch.no_grad():
        predicted = module(torch.from_numpy(inputs)).argmax(dim=1).numpy()
    recall = tuple(float((predicted[labels == k] == k).mean()) for k in range(NUM_CLASSES))
    return float((predicted == labels).mean()), recall


def build_reference_model(arch: str, *, broken_class: int | None = None) -> ReferenceModel:
    """A trained reference classifier as ONNX, with its golden-set scores; cached on disk.

    `broken_class` gives the deliberately regressed version of the same model:
    that digit's logit is suppressed so its recall collapses while overall
    accuracy moves by a few points only.
    """
    _check_options(arch, broken_class)
    stem = _cache_stem(arch, broken_class)
    onnx_path, meta_path = stem.with_suffix(".onnx"), stem.with_suffix(".json")
    if not (onnx_path.exists() and meta_path.exists()):
        module = load_reference_module(arch, broken_class=broken_class)
        accuracy, recall = _golden_scores(module)
        _write_atomically(onnx_path, export_onnx_bytes(module))
        _write_atomically(meta_path, json.dumps({"accuracy": accuracy, "class_recall": recall}).encode())
    meta = json.loads(meta_path.read_text())
    return ReferenceModel(
        arch=arch,
        broken_class=broken_class,
        onnx_bytes=onnx_path.read_bytes(),
        accuracy=meta["accuracy"],
        class_recall=tuple(meta["class_recall"]),
    )
