"""The README's `mlcp` examples run as written: every block fenced `sh run`, in order, in one shell, against a
live server with a real gate worker, so the examples cannot rot.

The world is what the README says: a folder holding `manage.py`, a `model.onnx` and its labelled `golden.npz`;
`MLCP_URL` pointing at the server; `GIT_COMMIT` and `CI_RUN_URL` as a CI job has them. Blocks fenced plain `sh`
are not run; they may hold no `mlcp` command but `mlcp serve` (a server, tested in tests/serving).
"""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from registry.models import AuditEvent, ModelVersion
from rollouts.choices import Phase
from rollouts.models import Rollout
from tests.factories import tiny_onnx
from tests.support.celery_worker import celery_worker, empty_broker
from tests.support.markdown import fenced_blocks
from tests.support.webserver import ROOT, gunicorn_server, server_env

README = ROOT / "README.md"
RUN = "sh run"


def test_the_readme_has_examples_to_run_and_every_mlcp_command_is_one_of_them():
    blocks = fenced_blocks(README)
    assert any(block.info == RUN and block.section == "Using it" for block in blocks)
    not_run = [line for block in blocks if block.info != RUN for line in block.lines
               if line.startswith("mlcp ") and not line.startswith("mlcp serve ")]
    assert not_run == [], "mark these examples' block `sh run` so they are tested, or take them out"


@pytest.mark.slow  # a gate worker runs the real gates on the pushed model
@pytest.mark.django_db(transaction=True, reset_sequences=True)  # the examples name rollout 1
def test_the_readmes_examples_run_as_written_against_a_live_server(redis_url, tmp_path):
    script = "\n".join(block.body for block in fenced_blocks(README) if block.info == RUN)
    _folder_the_readme_assumes(tmp_path)
    with empty_broker(redis_url), celery_worker(redis_url), \
            gunicorn_server(CELERY_BROKER_URL=redis_url) as (base_url, _):
        env = server_env(MLCP_URL=base_url, CELERY_BROKER_URL=redis_url, GIT_COMMIT="4f2c9e1",
                         CI_RUN_URL="https://ci.example.com/runs/812")
        for name in ("MLCP_TOKEN", "MLCP_CI_TOKEN"):
            env.pop(name, None)  # the examples get their tokens themselves
        # `mlcp` and `python` are this environment's, as on a machine with mlcp installed.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        # -x: the log names the command that failed. The bound is for a hung server, not a speed requirement.
        result = subprocess.run(["bash", "-euxo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"

    # They did what the README says they do.
    version = ModelVersion.objects.get(model__name="resnet", number=1)
    # `canary`: its rollout is still retreating (no controller runs here to finish the rollback).
    assert version.git_commit == "4f2c9e1" and version.status == "canary"
    assert AuditEvent.objects.filter(version_number=1, to_state="approved", actor="alice",
                                     reason="recall holds on every class").exists()
    assert (tmp_path / "model.onnx.sig").exists()  # what `fetch --verify` keeps beside the file
    rollout = Rollout.objects.get(pk=1)
    assert rollout.phase == Phase.ROLLING_BACK and rollout.retreat_phase == Phase.ROLLED_BACK
    assert rollout.events.filter(actor="pager", reason__contains="p95 doubled").exists()


def _folder_the_readme_assumes(folder: Path) -> None:
    (folder / "manage.py").symlink_to(ROOT / "manage.py")
    model = tiny_onnx(seed=7)
    (folder / "model.onnx").write_bytes(model)
    (folder / "golden.npz").write_bytes(_golden_set_it_gets_right(model))


def _golden_set_it_gets_right(model: bytes, per_class: int = 40) -> bytes:
    """Labelled examples the one-layer model classifies right with a wide margin, so its int8 version does
    too: every gate passes, as a model fit to ship would."""
    weights = numpy_helper.to_array(onnx.load_from_string(model).graph.initializer[0])
    inputs = np.random.default_rng(7).standard_normal((20_000, weights.shape[0])).astype(np.float32)
    logits = np.sort(inputs @ weights, axis=1)
    clear = inputs[logits[:, -1] - logits[:, -2] > 1.0]
    labels = (clear @ weights).argmax(axis=1)
    chosen = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(weights.shape[1])])
    assert len(chosen) == per_class * weights.shape[1], "the model never predicts some class"
    buffer = io.BytesIO()
    np.savez(buffer, inputs=clear[chosen], labels=labels[chosen].astype(np.int64),
             class_names=np.array([f"class-{c}" for c in range(weights.shape[1])]))
    return buffer.getvalue()
