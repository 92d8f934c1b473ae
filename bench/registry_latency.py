"""Registry read latency: mlcp's API next to an MLflow 3 tracking server, same data, same load, one run.

Starts both on loopback with SQLite and the same number of worker processes:
mlcp under gunicorn (the image's `web` mode), MLflow with `mlflow server` from
its own virtualenv, which this bench creates on first use (data/bench/mlflow-venv,
`pip install mlflow`; MLCP_BENCH_MLFLOW_VENV names another) and reuses after.
Each gets one model, --versions versions and three aliases, made through its
own REST API. Then the same load for both: --concurrency client threads,
urllib with a new connection per request, --requests requests per endpoint
shape, in alternating rounds so that a neighbour's load falls on both alike.

    .venv/bin/python bench/registry_latency.py [--requests 2000] [--concurrency 8] [--workers 2]

Shapes: "get version" (mlcp GET models/{name}/versions/{n}/, MLflow GET
model-versions/get) and "aliases" (mlcp GET models/{name}/aliases/, the list;
MLflow has no alias listing, so GET registered-models/alias, one version by
alias). mlcp reads with a viewer token; MLflow runs without authentication, as
it does by default.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe_machine  # noqa: E402
from devtools.embedded.ports import free_port, wait_for_port  # noqa: E402

MODEL = "bench-reads"
ALIASES = ("champion", "challenger", "staging")
ROUNDS = 4
P95_GOAL = 0.5  # mlcp p95 / MLflow p95 at the same load and worker count


def _progress(message: str) -> None:
    print(f"[registry_latency] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the two servers

def _mlflow_venv() -> Path:
    venv = Path(os.environ.get("MLCP_BENCH_MLFLOW_VENV") or ROOT / "data" / "bench" / "mlflow-venv")
    if not (venv / "bin" / "mlflow").exists():
        _progress(f"creating MLflow's own virtualenv at {venv} (pip install mlflow, a few minutes, once)")
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "mlflow"], check=True)
    return venv


def _start_mlcp(tmp: Path, workers: int) -> tuple[subprocess.Popen, str, str, str]:
    """A throwaway mlcp under gunicorn; returns (server, base URL, ci token, viewer token)."""
    env = dict(os.environ, MLCP_DATA_DIR=str(tmp / "mlcp"), PYTHONPATH=str(ROOT),
               DJANGO_SETTINGS_MODULE="controlplane.settings", LOG_LEVEL="WARNING",
               # The demo's broker, a folder: uploads queue their gates without a Redis server.
               CELERY_BROKER_URL="filesystem://")
    env.pop("DATABASE_URL", None)
    _progress("mlcp: migrating a fresh SQLite database")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)

    def token(user: str, role: str) -> str:
        return subprocess.run([sys.executable, "manage.py", "createtoken", user, "--role", role], cwd=ROOT, env=env,
                              check=True, capture_output=True, text=True).stdout.strip()

    ci_token, viewer_token = token("bench-ci", "ci"), token("bench-viewer", "viewer")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "controlplane.wsgi:application", "--bind",
                               f"127.0.0.1:{port}", "--workers", str(workers), "--log-level", "warning"],
                              cwd=ROOT, env=env)
    wait_for_port(port, timeout=60, process=server)
    return server, f"http://127.0.0.1:{port}", ci_token, viewer_token


def _populate_mlcp(url: str, ci_token: str, versions: int, tmp: Path) -> None:
    from cli.client import MlcpClient

    client = MlcpClient(url, ci_token)
    client.ensure_model(MODEL)
    for number in range(1, versions + 1):
        artifact = tmp / f"model-{number}.onnx"
        artifact.write_bytes(_tiny_onnx(seed=number))
        client.upload(f"/api/v1/models/{MODEL}/versions/", artifact, "artifact",
                      {"metadata": json.dumps({"tags": {"seed": str(number)}})})
    for offset, alias in enumerate(ALIASES):
        client.request("PUT", f"/api/v1/models/{MODEL}/aliases/{alias}",
                       json={"version": versions - offset, "reason": "bench"})
    _progress(f"mlcp: {versions} versions and {len(ALIASES)} aliases registered")


def _start_mlflow(tmp: Path, workers: int) -> tuple[subprocess.Popen, str]:
    venv = _mlflow_venv()
    port = free_port()
    _progress(f"MLflow: starting `mlflow server` ({_mlflow_version(venv)}, SQLite, {workers} workers)")
    server = subprocess.Popen(
        [str(venv / "bin" / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.sqlite3'}",
         "--default-artifact-root", str(tmp / "mlflow-artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        cwd=tmp, stdout=subprocess.DEVNULL, stderr=open(tmp / "mlflow-server.log", "wb"))
    # The first start creates its schema (alembic migrations), which takes a while.
    wait_for_port(port, timeout=300, process=server)
    return server, f"http://127.0.0.1:{port}"


def _mlflow_version(venv: Path) -> str:
    return subprocess.run([str(venv / "bin" / "mlflow"), "--version"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _populate_mlflow(url: str, versions: int) -> None:
    api = f"{url}/api/2.0/mlflow"
    _call_json("POST", f"{api}/registered-models/create", {"name": MODEL})
    # MLflow takes a local source only inside a run's artifacts: one run, as a training job would log.
    run = _call_json("POST", f"{api}/runs/create", {"experiment_id": "0", "run_name": "bench"})["run"]["info"]
    for number in range(1, versions + 1):
        _call_json("POST", f"{api}/model-versions/create",
                   {"name": MODEL, "source": f"{run['artifact_uri']}/model-{number}", "run_id": run["run_id"],
                    "tags": [{"key": "seed", "value": str(number)}]})
    for offset, alias in enumerate(ALIASES):
        _call_json("POST", f"{api}/registered-models/alias",
                   {"name": MODEL, "alias": alias, "version": str(versions - offset)})
    _progress(f"MLflow: {versions} versions and {len(ALIASES)} aliases registered")


def _call_json(method: str, url: str, body: dict | None = None, headers: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{method} {url} answered {exc.code}: {exc.read()[:500]!r}") from None


def _tiny_onnx(seed: int) -> bytes:
    """A valid one-layer ONNX classifier; the seed changes its weights and so its digest."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(seed).standard_normal((4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(weights, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


# ------------------------------------------------------------------ the load

def _get(url: str, headers: dict) -> float:
    """One GET on a new connection (urllib opens one per request); its latency in seconds, body read."""
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")
    return time.perf_counter() - started


def _load(urls: list[str], headers: dict, requests: int, concurrency: int) -> tuple[list[float], float]:
    """`requests` GETs cycling over `urls` from `concurrency` threads; (latencies, wall seconds)."""
    latencies: list[float] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        seconds = _get(urls[index % len(urls)], headers)
        with lock:
            latencies.append(seconds)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for _ in pool.map(one, range(requests)):
            pass
    return latencies, time.perf_counter() - started


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per server and endpoint shape")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="server worker processes, both servers")
    parser.add_argument("--versions", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mlcp-bench-reads-") as tmp:
        tmp = Path(tmp)
        servers = []
        try:
            mlcp, mlcp_url, ci_token, viewer_token = _start_mlcp(tmp, args.workers)
            servers.append(mlcp)
            _populate_mlcp(mlcp_url, ci_token, args.versions, tmp)
            mlflow, mlflow_url = _start_mlflow(tmp, args.workers)
            servers.append(mlflow)
            _populate_mlflow(mlflow_url, args.versions)

            numbers = range(1, args.versions + 1)
            api = f"{mlflow_url}/api/2.0/mlflow"
            targets = {
                ("mlcp", "get version"): ([f"{mlcp_url}/api/v1/models/{MODEL}/versions/{n}/" for n in numbers],
                                          {"Authorization": f"Token {viewer_token}"}),
                ("mlcp", "aliases"): ([f"{mlcp_url}/api/v1/models/{MODEL}/aliases/"],
                                      {"Authorization": f"Token {viewer_token}"}),
                ("MLflow", "get version"): ([f"{api}/model-versions/get?name={MODEL}&version={n}" for n in numbers],
                                            {}),
                ("MLflow", "aliases"): ([f"{api}/registered-models/alias?name={MODEL}&alias={a}" for a in ALIASES],
                                        {}),
            }
            _progress("warming up both servers (every worker imports and connects before timing starts)")
            for urls, headers in targets.values():
                _load(urls, headers, 20 * args.concurrency, args.concurrency)

            samples = {key: [] for key in targets}
            wall = {key: 0.0 for key in targets}
            per_round = max(1, args.requests // ROUNDS)
            for round_number in range(1, ROUNDS + 1):
                for key, (urls, headers) in targets.items():
                    _progress(f"round {round_number}/{ROUNDS}: {key[0]} {key[1]}, {per_round} requests")
                    latencies, seconds = _load(urls, headers, per_round, args.concurrency)
                    samples[key].extend(latencies)
                    wall[key] += seconds
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait(timeout=30)

    print(f"machine: {describe_machine()}")
    print(f"load: concurrency {args.concurrency}, a new connection per request (urllib), "
          f"{per_round * ROUNDS} requests per server and shape in {ROUNDS} alternating rounds; "
          f"both servers SQLite with {args.workers} worker processes")
    print(f"{'server':<8}{'shape':<13}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'req/s':>8}")
    for (server, shape), latencies in samples.items():
        print(f"{server:<8}{shape:<13}{_percentile(latencies, 50) * 1000:>8.1f}{_percentile(latencies, 95) * 1000:>8.1f}"
              f"{_percentile(latencies, 99) * 1000:>8.1f}{len(latencies) / wall[(server, shape)]:>8.0f}")
    print("mlcp / MLflow (lower is better for latency, higher for req/s):")
    for shape in ("get version", "aliases"):
        ours, theirs = samples[("mlcp", shape)], samples[("MLflow", shape)]
        ratios = [_percentile(ours, q) / _percentile(theirs, q) for q in (50, 95, 99)]
        throughput = (len(ours) / wall[("mlcp", shape)]) / (len(theirs) / wall[("MLflow", shape)])
        print(f"  {shape:<13} p50 {ratios[0]:.2f}x  p95 {ratios[1]:.2f}x  p99 {ratios[2]:.2f}x  "
              f"req/s {throughput:.2f}x  (goal p95 <= {P95_GOAL}x: {'met' if ratios[1] <= P95_GOAL else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
