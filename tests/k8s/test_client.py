"""Finding the cluster, and the retry policy's backoff."""

import pytest
import yaml

from k8s import ClusterNotConfigured, DeploymentWorkloads, RetryPolicy, connect


def test_kubeconfig_from_environment_reaches_the_cluster(kube_emulator, tmp_path, monkeypatch, namespace, stable):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": kube_emulator.url}}],
        "users": [{"name": "ci", "user": {"token": "not-checked-by-the-emulator"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "ci"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))

    cluster = connect()

    assert cluster.api_client.configuration.host == kube_emulator.url
    assert DeploymentWorkloads(cluster).read_stable(namespace, "resnet-server").replicas == 4


def test_no_configuration_at_all_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config

    with pytest.raises(ClusterNotConfigured) as caught:
        connect()
    assert "KUBECONFIG" in caught.value.detail


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    policy = RetryPolicy(attempts=10, base_delay_s=0.1, max_delay_s=2.0)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (6, 2.0), (9, 2.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered, so retries from many clients spread out
    assert 1.0 <= policy.delay(1, retry_after_s=1.0) <= 2.0  # the server's Retry-After wins
    assert policy.delay(1, retry_after_s=600) == 2.0  # but never beyond the cap
