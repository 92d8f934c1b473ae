"""The traffic generator now lives in `controlplane.serving.traffic` (the demo
needs it too); this keeps the tests' and benches' imports working.
"""

from controlplane.serving.traffic import (  # noqa: F401
    CANARY,
    STABLE,
    TrafficGenerator,
    TrafficReport,
    _loopback,
)
