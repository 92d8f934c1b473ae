"""The Prometheus alerting rules mlcp ships: each model's SLO burn, and mlcp's own health.

Built here, from one template, for three readers: the files in
`k8s/manifests/base/alerts/` (`manage.py alertrules --write`; a test keeps
them equal to this), `manage.py alertrules` for a Prometheus of one's own
(with this installation's URLs and the registry's per-model objectives), and
the end-to-end test, which needs the same rules with windows of seconds.

The SLO page is the SRE Workbook's multiwindow, multi-burn-rate alert
(https://sre.google/workbook/alerting-on-slos/, "6: Multiwindow, multi-burn-rate
alerts"). A burn rate of 1 spends the error budget (1 - objective) in exactly
the SLO period (30 days); the page fires when

    errors/requests over 1 h  > 14.4 x budget  and  over 5 m  > 14.4 x budget   (2% of the budget in 1 hour)
 or errors/requests over 6 h  >  6   x budget  and  over 30 m >  6   x budget   (5% of the budget in 6 hours)

The long window says the burn is significant, the short one that it is still
happening, so the page stops minutes after the errors do. Worked example: at
the default objective 99.9% (budget 0.1%), a version answering 2% of requests
with 5xx burns at 20x and pages within the 5-minute window; at 1% it burns at
10x, under 14.4, and pages through the 6-hour pair once 30 minutes agree.
Errors are 5xx answers of `mlcp_model_requests_total` (`serving/metrics.py`),
per model and version, so the alert names the version to roll back from.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

REQUESTS = "mlcp_model_requests_total"
ERROR_CODES = "5.."
DEFAULT_OBJECTIVE = 0.999
MODEL_SLO_BURN = "MlcpModelErrorBudgetBurn"


@dataclass(frozen=True)
class BurnWindows:
    """The page's two window pairs and factors, and how long a condition must hold (`for`)."""

    fast_long: str = "1h"
    fast_short: str = "5m"
    fast_factor: float = 14.4
    slow_long: str = "6h"
    slow_short: str = "30m"
    slow_factor: float = 6.0
    hold: str = "2m"

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.fast_short, self.slow_short, self.fast_long, self.slow_long)))


@dataclass(frozen=True)
class MlcpTimings:
    """How long mlcp's own conditions hold before they page (shortened by the tests)."""

    controller_stale_for: str = "2m"
    metrics_absent_for: str = "10m"
    gate_errors_window: str = "30m"
    tampered_for: str = "0m"


@dataclass(frozen=True)
class Links:
    """Where an alert's annotations point: the runbook and mlcp's web UI."""

    runbook_url: str = "https://mlcp.example.com/docs/runbook.md"
    public_url: str = "https://mlcp.example.com"


def error_ratio_record(window: str) -> str:
    return f"mlcp:model_request_errors:ratio_rate{window}"


def model_slo_rules(windows: BurnWindows = BurnWindows(), links: Links = Links(),
                    objectives: dict[str, float] | None = None) -> dict:
    """The rule file for every model's SLO. `objectives` ({model: availability}) overrides DEFAULT_OBJECTIVE."""
    records = [{"record": error_ratio_record(w),
                "expr": (f'sum by (model, version) (rate({REQUESTS}{{code=~"{ERROR_CODES}"}}[{w}]))\n'
                         f"/\nsum by (model, version) (rate({REQUESTS}[{w}]))")}
               for w in windows.all]
    # One budget per model that has traffic: its own objective when the registry names one, else the default.
    budget = (f"(1 - max by (model) (mlcp:model_slo_objective))\nor\n"
              f"(0 * max by (model) ({REQUESTS}) + {1 - DEFAULT_OBJECTIVE:.6g})")
    records.append({"record": "mlcp:model_error_budget", "expr": budget})
    groups = []
    if objectives:
        groups.append({"name": "mlcp-model-slo-objectives", "rules": [
            {"record": "mlcp:model_slo_objective", "expr": f"vector({objective:.6g})", "labels": {"model": model}}
            for model, objective in sorted(objectives.items())]})

    def burning(long: str, short: str, factor: float) -> str:
        return (f"(\n  {error_ratio_record(long)} > on (model) group_left () ({factor:g} * mlcp:model_error_budget)\n"
                f"  and\n  {error_ratio_record(short)} > on (model) group_left () ({factor:g} * mlcp:model_error_budget)\n)")

    page = {
        "alert": MODEL_SLO_BURN,
        "expr": (f"{burning(windows.fast_long, windows.fast_short, windows.fast_factor)}\nor\n"
                 f"{burning(windows.slow_long, windows.slow_short, windows.slow_factor)}"),
        "for": windows.hold,
        "labels": {"severity": "page"},
        "annotations": {
            "summary": "{{ $labels.model }} v{{ $labels.version }} is burning its error budget: "
                       "{{ $value | humanizePercentage }} of requests fail",
            "description": (f"5xx answers of {{{{ $labels.model }}}} v{{{{ $labels.version }}}} spend the error budget "
                            f"more than {windows.fast_factor:g}x too fast over {windows.fast_long} and "
                            f"{windows.fast_short}, or {windows.slow_factor:g}x over {windows.slow_long} and "
                            f"{windows.slow_short}."),
            "runbook_url": f"{links.runbook_url}#mlcpmodelerrorbudgetburn",
            "mlcp_url": f"{links.public_url}/models/{{{{ $labels.model }}}}/",
        },
    }
    # One group: rules in a group are evaluated in order, so the page reads this evaluation's ratios. Groups
    # run concurrently, and a page in a group of its own would read them as of this or the previous evaluation.
    groups.append({"name": "mlcp-model-slo", "rules": [*records, page]})
    return {"groups": groups}


def mlcp_rules(timings: MlcpTimings = MlcpTimings(), links: Links = Links()) -> dict:
    """The rule file for mlcp itself, on the series its web serves at /metrics (`controlplane/metrics.py`)."""
    errors = 'mlcp_gate_results{verdict="error"}'
    window = timings.gate_errors_window
    return {"groups": [{"name": "mlcp", "rules": [
        {"alert": "MlcpControllerStale",
         "expr": "mlcp_controller_alive == 0",
         "for": timings.controller_stale_for,
         "labels": {"severity": "page"},
         "annotations": {
             "summary": "No mlcp rollout controller has ticked for MLCP_CONTROLLER_STALE_S: rollouts do not move",
             "description": "Canaries neither advance nor roll back by themselves until a controller acts; "
                            "mlcp_controller_last_tick_timestamp_seconds says when one last did.",
             "runbook_url": f"{links.runbook_url}#mlcpcontrollerstale",
             "mlcp_url": f"{links.public_url}/rollouts/"}},
        {"alert": "MlcpMetricsAbsent",
         "expr": "absent(mlcp_controller_alive)",
         "for": timings.metrics_absent_for,
         "labels": {"severity": "ticket"},
         "annotations": {
             "summary": "Prometheus scrapes no mlcp /metrics: mlcp's own alerts cannot fire",
             "runbook_url": f"{links.runbook_url}#mlcpmetricsabsent"}},
        {"alert": "MlcpGateErrors",
         # New error rows in the window: a gate's error count grew, or its series appeared on a page that was
         # scraped then too (not merely first seen after Prometheus started).
         "expr": (f"({errors} - {errors} offset {window} > 0)\nor\n"
                  f"(\n  ({errors} > 0 unless {errors} offset {window})\n"
                  f"  and on (job, instance) (mlcp_controller_alive offset {window})\n)"),
         "labels": {"severity": "ticket"},
         "annotations": {
             "summary": "The {{ $labels.gate }} gate ended in error (crash, timeout, missing golden set) in the "
                        f"last {window}",
             "description": "A gate error sends the version back to registered; versions do not reach approval "
                            "while it lasts.",
             "runbook_url": f"{links.runbook_url}#mlcpgateerrors",
             "mlcp_url": f"{links.public_url}/"}},
        {"alert": "MlcpBlobTampered",
         "expr": "mlcp_blobs_tampered > 0",
         "for": timings.tampered_for,
         "labels": {"severity": "page"},
         "annotations": {
             "summary": "{{ $value }} stored artifact blob(s) no longer hash to their digest",
             "description": "mlcp refuses to serve them; the audit trail's blob.tampered events name the versions.",
             "runbook_url": f"{links.runbook_url}#mlcpblobtampered",
             "mlcp_url": f"{links.public_url}/"}},
    ]}]}


def to_yaml(rules: dict, header: str = "") -> str:
    """A rule file as YAML, block style, in the order built."""
    text = yaml.dump(rules, sort_keys=False, default_flow_style=False, width=120, Dumper=_BlockDumper)
    return f"{header}{text}"


class _BlockDumper(yaml.SafeDumper):
    pass


def _block_text(dumper, value: str):
    # Multi-line PromQL reads as written, not as one escaped line.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_BlockDumper.add_representer(str, _block_text)


FILES = {"model-slo.rules.yaml": model_slo_rules, "mlcp.rules.yaml": mlcp_rules}
HEADER = ("# Generated by `manage.py alertrules --write` from oncall/rules.py; edit that, not this file.\n"
          "# Load it into Prometheus (`rule_files:`), or apply k8s/manifests/base/alerts (a ConfigMap).\n")
CONFIGMAP = "mlcp-alert-rules"


def configmap() -> dict:
    """The shipped rule files as a ConfigMap, for a Prometheus in the cluster to mount (one key per file)."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": CONFIGMAP, "labels": {"app.kubernetes.io/part-of": "mlcp",
                                                       "app.kubernetes.io/component": "alert-rules"}},
            "data": {name: to_yaml(build()) for name, build in FILES.items()}}


def shipped_files() -> dict[str, str]:
    """What k8s/manifests/base/alerts/ holds, by file name."""
    return {**{name: to_yaml(build(), HEADER) for name, build in FILES.items()},
            "configmap.yaml": to_yaml(configmap(), "# Generated by `manage.py alertrules --write`: the rule files "
                                                  "beside it, for a Prometheus in the cluster to mount.\n"),
            "kustomization.yaml": ("# mlcp's Prometheus alerting rules as a ConfigMap (the *.rules.yaml files "
                                   "beside it load directly).\n"
                                   "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                                   "resources:\n  - configmap.yaml\n")}
