"""Turning verified bytes into things the gates measure: inference sessions and golden sets.

Everything here takes bytes, never a path: the worker verifies an artifact's
signature over exact bytes and must load those same bytes, not a file that
could change between the check and the use.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np
import onnxruntime as ort

from controlplane.errors import InvalidInput, first_line
from registry.golden_sets import load_golden_arrays

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


@dataclasses.dataclass(frozen=True)
class GoldenSet:
    """A labelled evaluation set: inputs [N, ...] float32, labels [N] int64, one name per class."""

    inputs: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass
class LoadedModel:
    """An inference session, the provider that actually runs it, and how long it took to load."""

    session: ort.InferenceSession
    device: str
    load_seconds: float

    # Looked up once: get_inputs() and get_outputs() build new Python objects on every call.
    @functools.cached_property
    def input_name(self) -> str:
        return self.session.get_inputs()[0].name

    @functools.cached_property
    def output_name(self) -> str:
        return self.session.get_outputs()[0].name

    def batch_size_for(self, wanted: int) -> int:
        """`wanted`, unless the model's first input has a fixed batch size, which then wins."""
        batch = self.session.get_inputs()[0].shape[0] if self.session.get_inputs()[0].shape else None
        return batch if isinstance(batch, int) and batch > 0 else wanted

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The first output for one batch fed to the first input."""
        # Only the first output is fetched: onnxruntime copies every output it is asked for.
        return self.session.run([self.output_name], {self.input_name: batch})[0]


# A gate's session lives for one job of a few batches. The CUDA provider's default, an exhaustive cuDNN
# search for every convolution of every new input shape, is paid again by each such session; cuDNN's
# heuristic choice is not. On an H200 (bench/gates_real_size.py, 128 images, one run) the golden-set gate
# went from 100 to 134 images/s on MobileNetV2 and from 209 to 239 on ResNet-50, validation latency
# unchanged or lower.
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC"}


def preferred_providers() -> list:
    """CUDA first (with CUDA_OPTIONS) when this onnxruntime build has it, the CPU always as the fallback."""
    available = ort.get_available_providers()
    return [(CUDA_PROVIDER, dict(CUDA_OPTIONS)), CPU_PROVIDER] if CUDA_PROVIDER in available else [CPU_PROVIDER]


def session_options() -> ort.SessionOptions:
    """The one set of session options every gate uses, so fp32 and int8 timings compare fairly."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: warnings about unused initializers are noise here
    return options


def open_session(model_bytes: bytes) -> LoadedModel:
    """An onnxruntime session over exactly these bytes, on CUDA when present.

    Raises InvalidInput (code "model_not_loadable") when onnxruntime refuses them.
    """
    started = time.perf_counter()
    try:
        session = ort.InferenceSession(model_bytes, sess_options=session_options(), providers=preferred_providers())
    except Exception as exc:  # onnxruntime raises several unrelated types for bad models
        raise InvalidInput(
            f"onnxruntime could not load the model: {first_line(exc)}", code="model_not_loadable"
        ) from exc
    # A provider can be requested and still not run (missing CUDA libraries):
    # report the one onnxruntime actually chose.
    return LoadedModel(session=session, device=session.get_providers()[0], load_seconds=time.perf_counter() - started)


def predict_logits(model: LoadedModel, inputs: np.ndarray, *, batch_size: int) -> np.ndarray:
    """Model outputs for every input, fed in batches of `batch_size`."""
    outputs = [model.run(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)]
    return np.concatenate(outputs, axis=0)


def parse_golden_set(npz_bytes: bytes) -> GoldenSet:
    """A GoldenSet from verified .npz bytes, by the registry's reader (pickles refused).

    Raises InvalidInput with code "invalid_golden_set".
    """
    inputs, labels, class_names = load_golden_arrays(npz_bytes)
    return GoldenSet(inputs=inputs, labels=labels, class_names=class_names)
