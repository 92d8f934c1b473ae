"""mlcp's Kubernetes adapter: the only package that talks to a cluster.

`connect()` gives a `Cluster`; `DeploymentWorkloads` manages stable and canary
Deployments of model servers; `ReplicaRatioRouter` and `HTTPRouteRouter` move
traffic between them. `manifests/` deploys mlcp itself (kustomize).
"""

from k8s.canary import CanarySpec, canary_name
from k8s.client import Cluster, build_api_client, connect
from k8s.errors import (CanaryWorkloadMissing, ClusterConflict, ClusterForbidden, ClusterNotConfigured,
                        ClusterObjectMissing, ClusterRejected, ClusterUnavailable, RouteMissing,
                        StableWorkloadMissing)
from k8s.retry import RetryPolicy
from k8s.traffic import HTTPRouteRouter, ReplicaRatioRouter, RouteState, TrafficRouter, split_replicas
from k8s.workloads import DeploymentWorkloads, WorkloadState

__all__ = [
    "CanarySpec", "canary_name", "Cluster", "build_api_client", "connect", "RetryPolicy",
    "DeploymentWorkloads", "WorkloadState", "TrafficRouter", "RouteState", "ReplicaRatioRouter",
    "HTTPRouteRouter", "split_replicas", "CanaryWorkloadMissing", "ClusterConflict",
    "ClusterForbidden", "ClusterNotConfigured", "ClusterObjectMissing", "ClusterRejected",
    "ClusterUnavailable", "RouteMissing", "StableWorkloadMissing",
]
