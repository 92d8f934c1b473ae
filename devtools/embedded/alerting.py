"""A real Alertmanager (Debian's `prometheus-alertmanager`) on loopback, and a Prometheus that evaluates
rule files and sends its alerts there: the page's whole path, for the on-call tests and the demo.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devtools.embedded.ports import free_port
from devtools.embedded.prometheus import PrometheusServer
from devtools.processes import stop_process


@dataclass(frozen=True)
class Webhook:
    """One Alertmanager receiver: a webhook sending `token` as `Authorization: Bearer`."""

    name: str
    url: str
    token: str


class AlertmanagerServer:
    """An `alertmanager` process with its config and data under `root`, clustering off.

    Every alert goes to every webhook (routes with `continue`), grouped by
    alert name and model; the waits are short for tests and demos.
    """

    def __init__(self, root: Path, webhooks: Sequence[Webhook], *, group_wait: str = "1s",
                 group_interval: str = "1s", repeat_interval: str = "2s"):
        self.root = Path(root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._config = self.root / "alertmanager.json"
        self._log = self.root / "alertmanager.log"
        self._process: subprocess.Popen | None = None
        timings = {"group_wait": group_wait, "group_interval": group_interval, "repeat_interval": repeat_interval}
        config = {
            "route": {"receiver": webhooks[0].name, "group_by": ["alertname", "model"], **timings,
                      "routes": [{"receiver": hook.name, "continue": True} for hook in webhooks]},
            "receivers": [{"name": hook.name, "webhook_configs": [{
                "url": hook.url, "send_resolved": True,
                "http_config": {"authorization": {"type": "Bearer", "credentials": hook.token}}}]}
                for hook in webhooks],
        }
        self._config.write_text(json.dumps(config))  # JSON is valid YAML

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> AlertmanagerServer:
        check = subprocess.run([_binary("amtool"), "check-config", str(self._config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"amtool refused the configuration:\n{check.stdout}{check.stderr}")
        self._process = subprocess.Popen(
            [_binary("prometheus-alertmanager", "alertmanager"), f"--config.file={self._config}",
             f"--storage.path={self.root / 'data'}", f"--web.listen-address={self.target}",
             "--cluster.listen-address=", "--log.level=warn"],
            stdout=self._log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"alertmanager exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"alertmanager not ready within {timeout_s}s:\n{self.log_tail()}")

    def metric(self, name: str, **labels) -> float:
        """The sum of one of Alertmanager's own counters (its /metrics), over series with `labels`."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            if series.split("{")[0] == name and all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total

    def log_tail(self) -> str:
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-20:]) if self._log.exists() else ""

    def stop(self) -> None:
        stop_process(self._process)
        self._process = None


class AlertingPrometheus(PrometheusServer):
    """A `PrometheusServer` that also evaluates `rule_files` and sends what fires to `alertmanager`."""

    def __init__(self, root: Path, rule_files: Sequence[Path], alertmanager: str, *, scrape_interval_s: float = 1.0):
        super().__init__(root, scrape_interval_s=scrape_interval_s)
        self.rule_files = [str(path) for path in rule_files]
        self.alertmanager = alertmanager

    def _write_config(self, targets: Sequence[str]) -> None:
        super()._write_config(targets)
        config = json.loads(self._config.read_text())
        config["rule_files"] = self.rule_files
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [self.alertmanager]}]}]}
        self._config.write_text(json.dumps(config))

    def alerts(self) -> list[dict]:
        """The alerts Prometheus holds now, pending and firing (its /api/v1/alerts)."""
        with urllib.request.urlopen(f"{self.url}/api/v1/alerts", timeout=10) as response:
            return json.load(response)["data"]["alerts"]


@contextmanager
def alerting_stack(rule_texts: dict[str, str], webhooks: Sequence[Webhook], *, scrape_interval_s: float = 1.0,
                   **alertmanager_timings):
    """A started Alertmanager routing to `webhooks`, and a Prometheus evaluating `rule_texts` ({file name:
    YAML}) that alerts it; yields (prometheus, alertmanager), stops and deletes both after."""
    root = Path(tempfile.mkdtemp(prefix="mlcp-alerting-"))
    alertmanager = AlertmanagerServer(root, webhooks, **alertmanager_timings)
    rule_files = []
    for name, text in rule_texts.items():
        (root / name).write_text(text)
        rule_files.append(root / name)
    check = subprocess.run([_binary("promtool"), "check", "rules", *map(str, rule_files)], capture_output=True,
                           text=True)
    if check.returncode != 0:
        raise RuntimeError(f"promtool refused the rules:\n{check.stdout}{check.stderr}")
    (root / "prometheus").mkdir()
    prometheus = AlertingPrometheus(root / "prometheus", rule_files, alertmanager.target,
                                    scrape_interval_s=scrape_interval_s)
    try:
        alertmanager.start()
        prometheus.start()
        yield prometheus, alertmanager
    finally:
        prometheus.stop()
        alertmanager.stop()
        shutil.rmtree(root, ignore_errors=True)


def _binary(*names: str) -> str:
    for name in names:
        if path := shutil.which(name):
            return path
    raise RuntimeError(f"{names[0]} not found: install Debian's 'prometheus' and 'prometheus-alertmanager' "
                       "packages (make test does)")
