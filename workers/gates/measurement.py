"""How the gates measure a running model: latency percentiles and peak memory.

Shared by validation (absolute latency) and quantization (int8 vs fp32), so
both use the same inputs, warmup and iteration counts.
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Iterator, Sequence

import numpy as np

from workers.gates.loading import CUDA_PROVIDER, LoadedModel

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


class UnmeasurableModel(Exception):
    """The model's inputs cannot be synthesised for a benchmark (unknown dtype or free dimensions)."""


def numpy_dtype(ort_type: str) -> type:
    """The numpy dtype for an onnxruntime type string such as 'tensor(float)'."""
    try:
        return _ORT_DTYPES[ort_type]
    except KeyError:
        raise UnmeasurableModel(f"input type {ort_type} is not supported by the benchmark") from None


def synthetic_feed(model: LoadedModel, batch_size: int, *, fixed_dims: dict[str, Sequence] | None = None) -> dict:
    """Seeded random inputs for every model input, with the batch dimension set to `batch_size`.

    `fixed_dims` maps an input name to a declared shape that fills symbolic
    dimensions other than the batch. Raises UnmeasurableModel when a dimension
    stays unknown or a fixed batch dimension differs from `batch_size`.
    """
    rng = np.random.default_rng(0)
    feed = {}
    for node in model.session.get_inputs():
        shape = _concrete_shape(node.name, node.shape, batch_size, (fixed_dims or {}).get(node.name))
        dtype = numpy_dtype(node.type)
        if np.issubdtype(dtype, np.floating):
            feed[node.name] = rng.random(shape, dtype=np.float32).astype(dtype)
        else:
            feed[node.name] = np.zeros(shape, dtype=dtype)
    return feed


def _concrete_shape(name: str, shape: Sequence, batch_size: int, declared: Sequence | None) -> list[int]:
    if not shape:
        raise UnmeasurableModel(f"input {name!r} is a scalar; the benchmark needs a batch dimension")
    batch, *rest = shape
    if isinstance(batch, int) and batch != batch_size:
        raise UnmeasurableModel(f"input {name!r} has a fixed batch size of {batch}")
    concrete = [batch_size]
    for index, dim in enumerate(rest, start=1):
        if isinstance(dim, int):
            concrete.append(dim)
        elif declared is not None and index < len(declared) and isinstance(declared[index], int):
            concrete.append(declared[index])
        else:
            raise UnmeasurableModel(f"input {name!r} dimension {index} ({dim!r}) is symbolic and not declared")
    return concrete


def measure_latency(model: LoadedModel, feed: dict, *, warmup: int, iterations: int) -> dict[str, float]:
    """Latency percentiles in milliseconds over `iterations` timed runs after `warmup` untimed ones."""
    for _ in range(warmup):
        model.session.run(None, feed)
    samples = np.empty(iterations)
    for index in range(iterations):
        started = time.perf_counter()
        model.session.run(None, feed)
        samples[index] = time.perf_counter() - started
    p50, p95, p99 = np.percentile(samples * 1000.0, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": float(samples.mean() * 1000.0)}


class PeakMemory:
    """Process RSS high-water mark (and CUDA memory in use) across a block of work.

    On Linux the kernel's peak-RSS counter is reset at the start
    (/proc/self/clear_refs), so the figure is this block's own peak; elsewhere it
    falls back to getrusage, which only grows and so gives a lower bound.
    """

    def __init__(self):
        self.rss_peak_delta_bytes: int = 0
        self.method: str = ""
        self.cuda_used_delta_bytes: int | None = None

    def as_evidence(self) -> dict:
        return {
            "rss_peak_delta_bytes": self.rss_peak_delta_bytes,
            "rss_method": self.method,
            "cuda_used_delta_bytes": self.cuda_used_delta_bytes,
        }


@contextlib.contextmanager
def track_peak_memory() -> Iterator[PeakMemory]:
    """Measure peak memory of the enclosed block into the yielded PeakMemory."""
    peak = PeakMemory()
    reset = _reset_peak_rss()
    rss_before = _proc_status_kib("VmRSS") if reset else None
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cuda_before = _cuda_used_bytes()
    yield peak
    if reset and rss_before is not None:
        peak.rss_peak_delta_bytes = max(0, (_proc_status_kib("VmHWM") or 0) - rss_before) * 1024
        peak.method = "VmHWM after clear_refs"
    else:
        maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak.rss_peak_delta_bytes = max(0, maxrss_after - maxrss_before) * 1024
        peak.method = "ru_maxrss delta (lower bound)"
    cuda_after = _cuda_used_bytes()
    if cuda_before is not None and cuda_after is not None:
        peak.cuda_used_delta_bytes = cuda_after - cuda_before


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # "5" resets only the peak-RSS counter (Linux >= 4.0)
        return True
    except OSError:
        return False


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _cuda_used_bytes() -> int | None:
    # onnxruntime's CUDA arena is invisible to torch's allocator statistics, so
    # this reads device-wide usage; the arena keeps what it grabbed, which makes
    # the after-minus-before figure close to the session's peak.
    import onnxruntime as ort

    if CUDA_PROVIDER not in ort.get_available_providers():
        return None
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        free, total = torch.cuda.mem_get_info()
        return int(total - free)
    except Exception:
        return None
