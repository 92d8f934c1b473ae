"""mlcp's Kubernetes adapter: the only package that talks to a cluster.

`connect()` gives a `Cluster`; `DeploymentWorkloads` manages stable and canary
Deployments of model servers; `build_router()` gives the `TrafficRouter` that
moves traffic between them (`ROUTER_KINDS`: replica ratio, Gateway API HTTPRoute). `manifests/` deploys mlcp itself (kustomize).
"""

from k8s.canary import CanarySpec, canary_name
from k8s.client import Cluster, build_api_client, connect
from k8s.errors import (CanaryWorkloadMissing, ClusterConflict, ClusterForbidden, ClusterNotConfigured,
                        ClusterObjectMissing, ClusterRejected, ClusterUnavailable, RouteMissing,
                        StableWorkloadMissing)
from k8s.retry import RetryPolicy
from k8s.traffic import (DEFAULT_ROUTER_KIND, ROUTER_KINDS, HTTPRouteRouter, ReplicaRatioRouter, RouterTarget,
                         RouteState, TrafficRouter, build_router, complete_target, split_replicas)
from k8s.workloads import DeploymentWorkloads, ListedDeployments, WorkloadState

__all__ = [
    "CanarySpec", "canary_name", "Cluster", "build_api_client", "connect", "RetryPolicy",
    "DeploymentWorkloads", "ListedDeployments", "WorkloadState", "TrafficRouter", "RouteState", "ReplicaRatioRouter",
    "HTTPRouteRouter", "split_replicas", "ROUTER_KINDS", "DEFAULT_ROUTER_KIND", "RouterTarget", "build_router",
    "complete_target", "CanaryWorkloadMissing", "ClusterConflict",
    "ClusterForbidden", "ClusterNotConfigured", "ClusterObjectMissing", "ClusterRejected",
    "ClusterUnavailable", "RouteMissing", "StableWorkloadMissing",
]
