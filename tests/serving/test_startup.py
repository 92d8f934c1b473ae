"""`mlcp serve` starts only on bytes that verify, and loads exactly those bytes."""

import json
import signal
import subprocess
import sys
import urllib.request

import pytest

from devtools.serve_process import ServeProcess
from serving import verification
from serving.artifact import ArtifactRejected, load_verified_artifact
from tests.factories import tiny_onnx
from tests.serving import keypair, signed_artifact
from tests.support.servers import free_port

EXIT_UNVERIFIED = 3


def run_serve(artifact, bundle, *keys, extra=()):
    """Run `mlcp serve` expecting it to refuse: it must exit by itself, quickly."""
    args = [sys.executable, "-m", "cli.main", "serve", "--model-file", str(artifact),
            "--bundle", str(bundle), "--model", "tiny", "--version", "1", "--track", "stable",
            "--port", str(free_port()), *[a for k in keys for a in ("--public-key", str(k))], *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


@pytest.fixture
def signed(tmp_path):
    private, public = keypair(tmp_path)
    artifact, bundle = signed_artifact(tmp_path, tiny_onnx(), private)
    return artifact, bundle, public


def test_refuses_to_start_on_a_tampered_artifact(signed):
    artifact, bundle, public = signed
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    result = run_serve(artifact, bundle, public)
    assert result.returncode == EXIT_UNVERIFIED
    assert "refusing to serve" in result.stderr and "does not verify" in result.stderr
    assert str(artifact) in result.stderr


def test_refuses_to_start_when_no_given_key_signed_the_bundle(signed, tmp_path):
    artifact, bundle, _ = signed
    _, stranger = keypair(tmp_path, "stranger")
    result = run_serve(artifact, bundle, stranger)
    assert result.returncode == EXIT_UNVERIFIED
    assert "does not verify" in result.stderr and "stranger.pub" in result.stderr


def test_refuses_a_valid_artifact_that_is_not_the_pinned_digest(signed):
    artifact, bundle, public = signed
    result = run_serve(artifact, bundle, public, extra=["--digest", "sha256:" + "0" * 64])
    assert result.returncode == EXIT_UNVERIFIED
    assert "not the pinned sha256:" + "0" * 64 in result.stderr


def test_starts_when_any_key_verifies_and_drains_on_sigterm(signed, tmp_path):
    artifact, bundle, public = signed
    _, retired = keypair(tmp_path, "retired")
    server = ServeProcess(artifact, bundle, [retired, public], model="tiny", version="1", track="stable")
    with server:
        with urllib.request.urlopen(f"{server.url}/readyz", timeout=5) as response:
            ready = json.load(response)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=120) == 0  # a bound for a hang, not how fast it drains
    assert ready["ready"] is True and ready["verified_with"] == str(public)
    assert ready["digest"].startswith("sha256:") and ready["track"] == "stable"


def test_serves_the_bytes_it_verified_even_if_the_file_changes_meanwhile(signed, monkeypatch):
    artifact, bundle, public = signed
    original = artifact.read_bytes()
    real_verify = verification.verify_artifact

    def swap_then_verify(path, bundle_path, key):
        # An attacker (or a half-finished download) replaces the file while we verify.
        artifact.write_bytes(tiny_onnx(seed=99))
        return real_verify(path, bundle_path, key)

    monkeypatch.setattr(verification, "verify_artifact", swap_then_verify)
    loaded = load_verified_artifact(artifact, bundle, [public])
    assert loaded.data == original
    assert artifact.read_bytes() != original
    # And the swapped file, read afresh, is refused.
    monkeypatch.setattr(verification, "verify_artifact", real_verify)
    with pytest.raises(ArtifactRejected, match="does not verify"):
        load_verified_artifact(artifact, bundle, [public])
