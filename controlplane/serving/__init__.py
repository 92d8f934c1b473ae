"""`mlcp serve`: a reference model server for canary rollouts.

It serves only bytes that verify against a model-signing bundle, answers
predictions over HTTP, and exports the request counter and latency histogram
that the rollout analysis (`rollouts.metrics`) queries, per model, version and
track. A fault switch makes it fail or slow down on demand, for demos and tests.
"""

from controlplane.serving.artifact import (
    ArtifactRejected,
    VerifiedArtifact,
    load_verified_artifact,
)
from controlplane.serving.faults import FaultSwitch
from controlplane.serving.metrics import ServingMetrics

__all__ = ["ArtifactRejected", "VerifiedArtifact", "load_verified_artifact", "FaultSwitch", "ServingMetrics"]
