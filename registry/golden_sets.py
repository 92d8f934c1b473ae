"""Golden-set files: `.npz` archives of labelled inputs, read without pickle.

One reader for the registry (which checks a set when it is registered) and the
gates (which read it again from verified bytes).
"""

import io
import zipfile

import numpy as np

from controlplane.errors import InvalidInput

_GOLDEN_KEYS = ("inputs", "labels")


def load_golden_arrays(npz_bytes: bytes) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(inputs, labels as int64, class names) from .npz bytes, refusing pickled objects and inconsistent arrays.

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
    return inputs, labels.astype(np.int64), class_names


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


def describe_golden_set(data: bytes) -> dict:
    inputs, labels, names = load_golden_arrays(data)
    return {"num_examples": int(len(labels)), "input_shape": list(inputs.shape[1:]), "class_names": list(names)}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
