"""Golden-set files: `.npz` archives of labelled inputs, read without pickle."""

import io
import zipfile

import numpy as np

from controlplane.errors import InvalidInput


def load_golden_arrays(data: bytes) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(inputs float32, labels int64, class names) from verified .npz bytes."""
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise InvalidInput(f"the golden set is not a readable .npz archive: {exc}", code="malformed_golden_set") from None
    with archive:
        missing = {"inputs", "labels"} - set(archive.files)
        if missing:
            raise InvalidInput(f"the golden set lacks {sorted(missing)}", code="malformed_golden_set")
        try:
            inputs, labels = archive["inputs"], archive["labels"]
            names = [str(n) for n in archive["class_names"]] if "class_names" in archive.files else []
        except ValueError as exc:  # object arrays would need pickle: refused
            raise InvalidInput(f"the golden set holds pickled objects, which are refused: {exc}",
                               code="malformed_golden_set") from None
    if inputs.dtype != np.float32:
        raise InvalidInput(f"golden 'inputs' must be float32, not {inputs.dtype}", code="malformed_golden_set")
    if labels.dtype != np.int64 or labels.ndim != 1:
        raise InvalidInput("golden 'labels' must be a 1-D int64 array", code="malformed_golden_set")
    if len(inputs) != len(labels) or len(labels) == 0:
        raise InvalidInput("golden 'inputs' and 'labels' must be non-empty and of the same length",
                           code="malformed_golden_set")
    if not names:
        names = [str(i) for i in range(int(labels.max()) + 1)]
    return inputs, labels, names


def describe_golden_set(data: bytes) -> dict:
    inputs, labels, names = load_golden_arrays(data)
    return {"num_examples": int(len(labels)), "input_shape": list(inputs.shape[1:]), "class_names": names}
