"""An onnxruntime session built from verified bytes, and the checks that turn a
JSON prediction request into its input tensor (or a 400, never a 500).
"""

from __future__ import annotations

import numpy as np


class BadInput(ValueError):
    """The request's inputs cannot be fed to the model: answered 400 with ``code``."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


class OnnxModel:
    """A classifier's first input and first output, run on the CPU provider (or
    CUDA when onnxruntime has it)."""

    def __init__(self, data: bytes, intra_op_threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Concurrency comes from serving requests on several threads; one
        # intra-op thread per request keeps small models from oversubscribing cores.
        options.intra_op_num_threads = intra_op_threads
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(data, sess_options=options, providers=providers)
        first_input = self.session.get_inputs()[0]
        self.input_name = first_input.name
        # Symbolic dimensions ("batch") come back as strings or None: any size goes.
        self.input_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in first_input.shape)
        if first_input.type != "tensor(float)":
            raise ValueError(f"mlcp serve needs a float32 input, the model's is {first_input.type}")
        first_output = self.session.get_outputs()[0]
        self.output_name = first_output.name
        last = first_output.shape[-1] if first_output.shape else None
        # A classifier's class count, when its graph says it (a symbolic last dimension does not).
        self.n_classes = last if isinstance(last, int) and last > 0 else None

    def parse_inputs(self, payload) -> np.ndarray:
        """The ``inputs`` field of a request as a float32 array of the model's input shape."""
        if not isinstance(payload, dict) or "inputs" not in payload:
            raise BadInput("missing_inputs", 'the body must be a JSON object with an "inputs" field')
        try:
            array = np.asarray(payload["inputs"], dtype=np.float32)
        except (ValueError, TypeError):
            raise BadInput("malformed_inputs", '"inputs" must be a nested list of numbers of one shape') from None
        expected = "[" + ", ".join("N" if d is None else str(d) for d in self.input_shape) + "]"
        if array.ndim != len(self.input_shape) or any(
                want is not None and want != got for want, got in zip(self.input_shape, array.shape)):
            raise BadInput("wrong_shape", f'"inputs" has shape {list(array.shape)}, the model takes {expected}')
        if array.size == 0:
            raise BadInput("empty_inputs", '"inputs" holds no values')
        if not np.isfinite(array).all():
            raise BadInput("non_finite_inputs", '"inputs" holds NaN or infinite values')
        return array

    def predict(self, inputs: np.ndarray, never_class: int | None = None) -> dict:
        """Logits and the arg-max class of each row; ``never_class`` (a fault for
        demos and tests) answers the runner-up wherever that class would win."""
        logits = self.session.run([self.output_name], {self.input_name: inputs})[0]
        scores = np.array(logits, dtype=float, copy=True)
        if never_class is not None and scores.ndim >= 1 and 0 <= never_class < scores.shape[-1] > 1:
            scores[..., never_class] = -np.inf
        return {"logits": logits.tolist(), "classes": np.argmax(scores, axis=-1).tolist()}
