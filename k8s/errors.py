"""Errors the Kubernetes adapter raises, as mlcp domain errors.

Nothing outside `k8s/` ever sees a `kubernetes` exception: each API failure is
turned into one of these, with the namespace and object named in the message.
"""

from controlplane.errors import Conflict, InvalidInput, MlcpError, NotFound, UpstreamUnavailable


class ClusterUnavailable(UpstreamUnavailable):
    """The Kubernetes API did not answer, or kept failing after retries."""

    code = "cluster_unavailable"


class ClusterNotConfigured(UpstreamUnavailable):
    """No in-cluster config, kubeconfig or explicit host to reach a cluster with."""

    code = "cluster_not_configured"


class ClusterConflict(Conflict):
    """An object kept changing under us (409) after every retry."""

    code = "cluster_conflict"


class ClusterRejected(InvalidInput):
    """The API refused a request as invalid (400, 422): a bug or a bad object."""

    code = "cluster_rejected"


class ClusterForbidden(MlcpError):
    """mlcp's service account may not do this (401, 403): RBAC, not the caller."""

    code = "cluster_forbidden"
    http_status = 502


class ClusterObjectMissing(NotFound):
    """An object the adapter needs does not exist."""

    code = "cluster_object_missing"


class StableWorkloadMissing(ClusterObjectMissing):
    """The stable Deployment a rollout starts from does not exist."""

    code = "stable_workload_missing"


class CanaryWorkloadMissing(ClusterObjectMissing):
    """The canary Deployment to promote does not exist."""

    code = "canary_workload_missing"


class RouteMissing(ClusterObjectMissing):
    """The HTTPRoute to set weights on does not exist or has no stable backend."""

    code = "route_missing"
