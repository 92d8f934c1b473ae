"""The Prometheus rules mlcp ships: generated from one template, valid, and tested by `promtool test rules`.

The unit tests of the rules are promtool's own YAML (tests/k8s/alert_rules/*.test.yaml), run against the
files in k8s/manifests/base/alerts/ exactly as shipped.
"""

import re
import shutil
import subprocess
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

from oncall import rules
from tests.k8s.test_manifests import MANIFESTS, by_id, render

ALERTS_DIR = MANIFESTS / "base" / "alerts"
UNIT_TESTS = sorted((Path(__file__).parent / "alert_rules").glob("*.test.yaml"))
RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"


def promtool(*args, cwd=None) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: install Debian's 'prometheus' package (make test does)")
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def alert_names(rule_file: dict) -> list[str]:
    return [rule["alert"] for group in rule_file["groups"] for rule in group["rules"] if "alert" in rule]


def test_shipped_files_are_what_the_generator_makes():
    for name, text in rules.shipped_files().items():
        assert (ALERTS_DIR / name).read_text() == text, f"run `manage.py alertrules --write {ALERTS_DIR}`"


@pytest.mark.parametrize("name", sorted(rules.FILES))
def test_promtool_accepts_the_shipped_rules(name):
    checked = promtool("check", "rules", str(ALERTS_DIR / name))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("unit_test", UNIT_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_of_the_rules_pass(unit_test):
    tested = promtool("test", "rules", str(unit_test))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_base_build_ships_the_rule_files_as_a_configmap():
    configmap = by_id(render(MANIFESTS / "base"))[("ConfigMap", rules.CONFIGMAP)]
    assert configmap["data"] == {name: rules.to_yaml(build()) for name, build in rules.FILES.items()}


def test_a_models_own_objective_widens_or_narrows_its_budget(tmp_path):
    """lenient (99% objective) failing 2% burns at 2x and does not page; strict (default 99.9%) at 20x does."""
    (tmp_path / "rules.yaml").write_text(rules.to_yaml(rules.model_slo_rules(objectives={"lenient": 0.99})))
    series = []
    for model in ("lenient", "strict"):
        series += [{"series": f'mlcp_model_requests_total{{model="{model}",version="1",code="200"}}',
                    "values": "0+980x90"},
                   {"series": f'mlcp_model_requests_total{{model="{model}",version="1",code="500"}}',
                    "values": "0+20x90"}]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": [
            {"expr": "round(mlcp:model_error_budget, 0.0001)", "eval_time": "60m",
             "exp_samples": [{"labels": '{model="lenient"}', "value": 0.01},
                             {"labels": '{model="strict"}', "value": 0.001}]},
            {"expr": 'count by (model) (ALERTS{alertname="MlcpModelErrorBudgetBurn",alertstate="firing"})',
             "eval_time": "60m", "exp_samples": [{"labels": '{model="strict"}', "value": 1}]}]}]}))
    tested = promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_alertrules_prints_one_loadable_file_with_the_registrys_objectives(db, tmp_path, settings):
    from registry.models import RegisteredModel

    settings.MLCP_PUBLIC_URL = "https://mlcp.internal"
    RegisteredModel.objects.create(name="fraud", slo={"availability": 0.995, "latency_p95_ms": 200})
    RegisteredModel.objects.create(name="resnet")  # the default objective: no rule of its own
    out = StringIO()
    call_command("alertrules", stdout=out)
    (tmp_path / "all.rules.yaml").write_text(out.getvalue())
    checked = promtool("check", "rules", str(tmp_path / "all.rules.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    loaded = yaml.safe_load(out.getvalue())
    objectives = [rule for group in loaded["groups"] for rule in group["rules"]
                  if rule.get("record") == "mlcp:model_slo_objective"]
    assert objectives == [{"record": "mlcp:model_slo_objective", "expr": "vector(0.995)",
                           "labels": {"model": "fraud"}}]
    assert set(alert_names(loaded)) == {rules.MODEL_SLO_BURN, "MlcpControllerStale", "MlcpMetricsAbsent",
                                        "MlcpGateErrors", "MlcpBlobTampered"}
    assert "https://mlcp.internal/docs/runbook.md#mlcpmodelerrorbudgetburn" in out.getvalue()
    assert "https://mlcp.internal/models/{{ $labels.model }}/" in out.getvalue()


def test_every_shipped_alert_has_its_runbook_section():
    headings = {re.sub(r"[^a-z0-9-]", "", line.lstrip("#").strip().lower().replace(" ", "-"))
                for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")}
    for name, build in rules.FILES.items():
        for group in build()["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    anchor = rule["annotations"]["runbook_url"].partition("#")[2]
                    assert anchor in headings, f"docs/runbook.md has no '## {rule['alert']}'"


def _metric_names(rule_file: dict) -> set[str]:
    text = " ".join(rule["expr"] for group in rule_file["groups"] for rule in group["rules"])
    return set(re.findall(r"\b(mlcp_[a-z_]+)\b", text))


@pytest.mark.parametrize("metric", sorted(_metric_names(rules.mlcp_rules())))
def test_every_series_the_mlcp_rules_read_is_on_the_metrics_page(client, db, metric):
    page = client.get("/metrics").content.decode()
    assert f"# TYPE {metric} " in page
