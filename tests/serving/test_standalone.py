"""The model server runs in every serving pod, so it must start and answer with
neither Django nor Celery (nor any other control-plane package) importable."""

import json
import urllib.request

from devtools.serve_process import ServeProcess
from tests.factories import tiny_onnx
from tests.serving import keypair, signed_artifact
from tests.support.blocked_imports import CONTROL_PLANE, DEV_ONLY, blocked_env, run_python

BLOCKED = CONTROL_PLANE + DEV_ONLY

BUILD_AND_ANSWER = r"""
import json, sys, threading, urllib.request
from pathlib import Path

from serving.server import ServeConfig, build_server

artifact, bundle, key = map(Path, sys.argv[1:4])
server = build_server(ServeConfig(model_file=artifact, bundle=bundle, public_keys=[key], model="tiny",
                                  version="1", track="stable", port=0))
threading.Thread(target=server.serve_forever, daemon=True).start()
url = "http://127.0.0.1:%d" % server.server_address[1]
request = urllib.request.Request(url + "/v1/predict", data=json.dumps({"inputs": [[1, 2, 3, 4]]}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=10) as response:
    answer = json.load(response)
with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
    metrics = response.read().decode()
server.shutdown()
print(json.dumps({"classes": answer["classes"], "counted": 'code="200"' in metrics,
                  "modules": sorted({m.partition(".")[0] for m in sys.modules})}))
"""


def signed(tmp_path):
    private, public = keypair(tmp_path)
    artifact, bundle = signed_artifact(tmp_path, tiny_onnx(), private)
    return artifact, bundle, public


def test_the_server_builds_and_answers_with_the_control_plane_blocked(tmp_path):
    artifact, bundle, public = signed(tmp_path)
    result = run_python(BUILD_AND_ANSWER, blocked_env(tmp_path, BLOCKED), str(artifact), str(bundle), str(public))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["classes"]) == 1 and report["counted"]
    assert not set(report["modules"]) & set(BLOCKED)


def test_mlcp_serve_starts_and_answers_with_the_control_plane_blocked(tmp_path):
    artifact, bundle, public = signed(tmp_path)
    server = ServeProcess(artifact, bundle, [public], model="tiny", version="1", track="stable",
                          env=blocked_env(tmp_path, BLOCKED))
    with server:
        request = urllib.request.Request(f"{server.url}/v1/predict", method="POST",
                                         data=json.dumps({"inputs": [[1, 2, 3, 4]]}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    assert "blocked" not in server.log()
