"""docs/runbook.md runs: every `sh` block, in order, against a live mlcp server, so the runbook cannot rot.

The world is what the alerts describe: a model whose v2 was just promoted over v1, and a v3 whose gate
errored. The variables the runbook names are set as its table says (ROLLOUT: the model's latest rollout when
the block runs). `sh-cluster` blocks need `kubectl` and a cluster; they are not run, and may hold nothing else.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.accounts import issue_token
from controlplane.roles import Role
from registry.models import AuditEvent, GateResult
from rollouts.choices import Phase, RolloutKind
from rollouts.models import Rollout
from tests.support.markdown import fenced_blocks
from tests.support.webserver import ROOT, gunicorn_server, server_env

pytestmark = pytest.mark.django_db(transaction=True)
RUNBOOK = ROOT / "docs" / "runbook.md"


def runbook_blocks() -> list[tuple[str, str, str]]:
    """(section, fence info, body) of every fenced block, in order; each section is an alert's name."""
    return [(block.section, block.info, block.body) for block in fenced_blocks(RUNBOOK)]


def test_blocks_not_run_only_talk_to_a_cluster():
    for section, info, body in runbook_blocks():
        assert info in ("sh", "sh-cluster"), f"{section}: a ```{info} block: say whether it runs"
        if info == "sh-cluster":
            assert all(line.startswith("kubectl ") for line in body.splitlines() if line.strip()), body


def test_every_sh_block_of_the_runbook_runs_against_a_live_server(released, make_version, redis_url):
    model = released[0].model
    broken = make_version(model, "registered")
    GateResult.objects.create(version=broken, gate="golden_set", verdict="error", summary="no golden set")
    tokens = {"MLCP_TOKEN": issue_token("pager", Role.ONCALL), "MLCP_CI_TOKEN": issue_token("ci-bot", Role.CI)}
    ran = []
    with gunicorn_server(CELERY_BROKER_URL=redis_url) as (base_url, _):
        for section, info, body in runbook_blocks():
            if info != "sh":
                continue
            version = broken.number if section == "MlcpGateErrors" else released[1].number
            rollout = Rollout.objects.filter(model=model).order_by("-id").first()
            env = server_env(MLCP_URL=base_url, MODEL=model.name, VERSION=str(version), ROLLOUT=str(rollout.pk),
                             CELERY_BROKER_URL=redis_url, **tokens)
            # `mlcp` and `python` are this environment's, as on an on-call machine with mlcp installed.
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=ROOT, env=env, capture_output=True,
                                    text=True, timeout=120)
            assert result.returncode == 0, f"{section}:\n{body}\n{result.stdout}\n{result.stderr}"
            ran.append(section)
    assert set(ran) == {"MlcpModelErrorBudgetBurn", "MlcpControllerStale", "MlcpMetricsAbsent", "MlcpGateErrors",
                        "MlcpBlobTampered"}
    # The actions did what the runbook says: a rollback started (then aborted by its undo), the gates queued.
    rollback = Rollout.objects.get(model=model, kind=RolloutKind.ROLLBACK)
    assert rollback.phase == Phase.ROLLING_BACK and rollback.retreat_phase == Phase.ABORTED
    assert rollback.events.filter(reason__contains="MlcpModelErrorBudgetBurn").exists()
    assert AuditEvent.objects.filter(action="version.gates_requested", version_number=broken.number).exists()
