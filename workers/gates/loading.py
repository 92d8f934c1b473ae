"""Turning verified bytes into things the gates measure: inference sessions and golden sets.

Everything here takes bytes, never a path: the worker verifies an artifact's
signature over exact bytes and must load those same bytes, not a file that
could change between the check and the use.
"""

from __future__ import annotations

import dataclasses
import io
import time
import zipfile

import numpy as np
import onnxruntime as ort

from controlplane.errors import InvalidInput

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"

_GOLDEN_KEYS = ("inputs", "labels")


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

    @property
    def input_name(self) -> str:
        return self.session.get_inputs()[0].name

    def batch_size_for(self, wanted: int) -> int:
        """`wanted`, unless the model's first input has a fixed batch size, which then wins."""
        batch = self.session.get_inputs()[0].shape[0] if self.session.get_inputs()[0].shape else None
        return batch if isinstance(batch, int) and batch > 0 else wanted

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The first output for one batch fed to the first input."""
        return self.session.run(None, {self.input_name: batch})[0]


def preferred_providers() -> list[str]:
    """CUDA first when this onnxruntime build has it, the CPU always as the fallback."""
    available = ort.get_available_providers()
    return [CUDA_PROVIDER, CPU_PROVIDER] if CUDA_PROVIDER in available else [CPU_PROVIDER]


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
            f"onnxruntime could not load the model: {_first_line(exc)}", code="model_not_loadable"
        ) from exc
    # A provider can be requested and still not run (missing CUDA libraries):
    # report the one onnxruntime actually chose.
    return LoadedModel(session=session, device=session.get_providers()[0], load_seconds=time.perf_counter() - started)


def predict_logits(model: LoadedModel, inputs: np.ndarray, *, batch_size: int) -> np.ndarray:
    """Model outputs for every input, fed in batches of `batch_size`."""
    outputs = [model.run(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)]
    return np.concatenate(outputs, axis=0)


def parse_golden_set(npz_bytes: bytes) -> GoldenSet:
    """A GoldenSet from .npz bytes, refusing pickled objects and inconsistent arrays.

    Expects `inputs` (float32, [N, ...]), `labels` (integers in [0, classes)) and
    optionally `class_names` (strings; defaults to "0", "1", ...).
    Raises InvalidInput with code "invalid_golden_set".
    """
    arrays = _load_npz(npz_bytes)
    inputs, labels = arrays["inputs"], arrays["labels"]
    if inputs.dtype != np.float32:
        raise _invalid(f"'inputs' must be float32, got {inputs.dtype}")
    if inputs.ndim < 2 or len(inputs) == 0:
        raise _invalid(f"'inputs' must be a non-empty batch [N, ...], got shape {list(inputs.shape)}")
    if not np.isfinite(inputs).all():
        raise _invalid("'inputs' contains NaN or infinite values")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise _invalid(f"'labels' must be a 1-D integer array, got {labels.dtype} {list(labels.shape)}")
    if len(labels) != len(inputs):
        raise _invalid(f"{len(inputs)} inputs but {len(labels)} labels")
    class_names = _class_names(arrays.get("class_names"), labels)
    return GoldenSet(inputs=inputs, labels=labels.astype(np.int64), class_names=class_names)


def _load_npz(npz_bytes: bytes) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(npz_bytes), allow_pickle=False) as archive:
            missing = [key for key in _GOLDEN_KEYS if key not in archive.files]
            if missing:
                raise _invalid(f"the golden set has no {missing[0]!r} array")
            return {key: archive[key] for key in archive.files}
    except ValueError as exc:
        # numpy's wording for an object array met with allow_pickle=False
        if "allow_pickle" in str(exc):
            raise _invalid(
                "the golden set contains pickled Python objects; only plain numeric and string arrays are accepted"
            ) from exc
        raise _invalid(f"the golden set is not a readable .npz file: {exc}") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _invalid(f"the golden set is not a readable .npz file: {_first_line(exc)}") from exc


def _class_names(names: np.ndarray | None, labels: np.ndarray) -> tuple[str, ...]:
    if names is None:
        count = int(labels.max()) + 1 if len(labels) else 0
        names = np.array([str(index) for index in range(count)])
    if names.ndim != 1 or names.dtype.kind != "U":
        raise _invalid(f"'class_names' must be a 1-D array of strings, got {names.dtype} {list(names.shape)}")
    if labels.min() < 0 or labels.max() >= len(names):
        raise _invalid(
            f"labels must lie in [0, {len(names)}) for {len(names)} class names, got {labels.min()}..{labels.max()}"
        )
    return tuple(str(name) for name in names)


def _invalid(detail: str) -> InvalidInput:
    return InvalidInput(detail, code="invalid_golden_set")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
