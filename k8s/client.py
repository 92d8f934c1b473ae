"""How mlcp reaches a Kubernetes API: configuration, timeouts and retries.

`connect()` finds the cluster (explicit host, kubeconfig, or in-cluster service
account) and returns a `Cluster`: an `ApiClient` plus the timeout and retry
policy that every adapter call goes through.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, TypeVar

from kubernetes import client as kube
from kubernetes import config as kube_config

from k8s.errors import ClusterNotConfigured
from k8s.retry import RetryPolicy, call_with_retries

T = TypeVar("T")

# (connect, read) seconds. A hung API server must not hang the controller's tick.
DEFAULT_REQUEST_TIMEOUT = (5.0, 30.0)


def build_api_client(host: str | None = None, *, kubeconfig: str | None = None,
                     context: str | None = None) -> kube.ApiClient:
    """An `ApiClient` for the first of: `host`, `kubeconfig`, $KUBECONFIG,
    the in-cluster service account, ~/.kube/config.

    `host` is for an unauthenticated endpoint such as the test emulator.
    """
    configuration = kube.Configuration()
    if host:
        configuration.host = host
    else:
        _load_configuration(configuration, kubeconfig, context)
    # Retries are ours (k8s.retry), with backoff and error translation; urllib3's
    # silent ones would multiply with them and hide how long an outage lasted.
    configuration.retries = False
    return kube.ApiClient(configuration)


def _load_configuration(configuration: kube.Configuration, kubeconfig: str | None,
                        context: str | None) -> None:
    config_file = kubeconfig or os.environ.get("KUBECONFIG")
    try:
        if config_file:
            kube_config.load_kube_config(config_file=config_file, context=context,
                                         client_configuration=configuration)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            kube_config.load_incluster_config(client_configuration=configuration)
        else:
            kube_config.load_kube_config(context=context, client_configuration=configuration)
    except (kube_config.ConfigException, OSError) as exc:
        raise ClusterNotConfigured(
            "No Kubernetes cluster configured: set KUBECONFIG, run in a pod with a "
            f"service account, or pass an explicit host ({exc})",
            kubeconfig=config_file or "") from exc


@dataclass
class Cluster:
    """An API client with the request timeout and retry policy used for every call."""

    api_client: kube.ApiClient
    request_timeout: tuple[float, float] = DEFAULT_REQUEST_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @cached_property
    def apps(self) -> kube.AppsV1Api:
        return kube.AppsV1Api(self.api_client)

    @cached_property
    def custom(self) -> kube.CustomObjectsApi:
        return kube.CustomObjectsApi(self.api_client)

    def call(self, what: str, operation: Callable[[], T], **context) -> T:
        """Run `operation` with retries; `what` and `context` name it in errors."""
        return call_with_retries(operation, what=what, policy=self.retry, **context)

    def close(self) -> None:
        self.api_client.close()


def connect(host: str | None = None, *, kubeconfig: str | None = None, context: str | None = None,
            request_timeout: tuple[float, float] = DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy | None = None) -> Cluster:
    """A `Cluster` for the configured Kubernetes API (see `build_api_client`)."""
    return Cluster(build_api_client(host, kubeconfig=kubeconfig, context=context),
                   request_timeout=request_timeout, retry=retry or RetryPolicy())
