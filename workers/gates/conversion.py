"""Converting an uploaded `torch.export` program (.pt2) to the ONNX the gates measure.

The conversion is only accepted when onnxruntime reproduces the program's own
outputs on a fixed random input, so every later gate measures the same model.

Trust: in torch 2.13 `torch.export.load` DOES unpickle. The .pt2 archive may
hold weights and constants saved with pickle, and the loader reads them with
`torch.load(..., weights_only=False)` and plain `pickle.loads`, so a crafted
archive runs arbitrary code. Call `convert_pt2_to_onnx` only on bytes whose
signature was verified against a trusted key first, in a worker that holds no
secrets it does not need.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from controlplane.errors import InvalidInput, first_line

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions: only .pt2 uploads need it, and the
# other gates should not pay its import time or memory.

_PARITY_SEED = 0
_SYMBOLIC_DIM_SIZE = 2


def convert_pt2_to_onnx(
    pt2_bytes: bytes,
    *,
    parity_atol: float = 1e-4,
    input_names: tuple[str, ...] = ("input",),
    output_names: tuple[str, ...] = ("logits",),
) -> tuple[bytes, dict]:
    """ONNX bytes for a verified .pt2 program, and the evidence that both compute the same thing.

    Dynamic dimensions of the program stay dynamic. Raises InvalidInput with
    code "conversion_failed" when the program does not load or export, and
    "conversion_parity_failed" (context: the parity evidence) when the largest
    absolute output difference exceeds `parity_atol`.
    """
    program = _load_program(pt2_bytes)
    onnx_bytes = _export(program, input_names, output_names)
    evidence = _parity(program, onnx_bytes, parity_atol)
    if not evidence["passed"]:
        raise InvalidInput(
            f"The ONNX conversion differs from the PyTorch program by up to {evidence['max_abs_diff']:.3g}, "
            f"over the {parity_atol:g} tolerance.",
            code="conversion_parity_failed",
            **evidence,
        )
    return onnx_bytes, evidence


def _load_program(pt2_bytes: bytes) -> torch.export.ExportedProgram:
    import torch

    # Unpickles: see the module docstring. The bytes must have been verified.
    try:
        return torch.export.load(io.BytesIO(pt2_bytes))
    except Exception as exc:
        raise InvalidInput(
            f"The artifact is not a loadable torch.export program: {first_line(exc)}", code="conversion_failed"
        ) from exc


def _export(program: torch.export.ExportedProgram, input_names, output_names) -> bytes:
    import torch

    torch_onnx_log = logging.getLogger("torch.onnx")
    previous_level = torch_onnx_log.level
    torch_onnx_log.setLevel(logging.ERROR)  # one warning per absent torchvision op otherwise
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exported = torch.onnx.export(
                program, input_names=list(input_names), output_names=list(output_names), dynamo=True, verbose=False
            )
        return exported.model_proto.SerializeToString()
    except Exception as exc:
        raise InvalidInput(
            f"The program could not be exported to ONNX: {first_line(exc)}", code="conversion_failed"
        ) from exc
    finally:
        torch_onnx_log.setLevel(previous_level)


def _parity(program: torch.export.ExportedProgram, onnx_bytes: bytes, atol: float) -> dict:
    import torch

    inputs = _parity_inputs(program)
    with torch.no_grad():
        expected = program.module()(*inputs)
    expected = [t.numpy() for t in (expected if isinstance(expected, (tuple, list)) else [expected])]
    # The CPU provider, like the torch reference above, so the comparison is of
    # the conversion and not of two different devices' kernels.
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    feed = {node.name: tensor.numpy() for node, tensor in zip(session.get_inputs(), inputs)}
    actual = session.run(None, feed)
    max_abs = max(float(np.max(np.abs(e - a))) for e, a in zip(expected, actual))
    return {
        "passed": bool(max_abs <= atol) and len(expected) == len(actual),
        "max_abs_diff": max_abs,
        "tolerance": atol,
        "input_shapes": [list(t.shape) for t in inputs],
        "seed": _PARITY_SEED,
    }


def _parity_inputs(program: torch.export.ExportedProgram) -> list[torch.Tensor]:
    import torch

    generator = torch.Generator().manual_seed(_PARITY_SEED)
    return [torch.rand(shape, generator=generator, dtype=dtype) for shape, dtype in _input_specs(program)]


def _input_specs(program: torch.export.ExportedProgram) -> list[tuple[list[int], torch.dtype]]:
    # The saved example inputs give real sizes for every dimension; without
    # them, symbolic dimensions get a small size the program must accept.
    if program.example_inputs is not None:
        args, _ = program.example_inputs
        return [(list(t.shape), t.dtype) for t in args]
    user_inputs = set(program.graph_signature.user_inputs)
    specs = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            value = node.meta["val"]
            shape = [d if isinstance(d, int) else _SYMBOLIC_DIM_SIZE for d in value.shape]
            specs.append((shape, value.dtype))
    return specs
