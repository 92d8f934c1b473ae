"""Development-only code: never installed in production (`pip install .` leaves it out).

The demo (`manage.py demo`, a Django app listed in INSTALLED_APPS only where
this package is importable), the embedded Kubernetes emulator and Prometheus,
the live-rollout driver, a `mlcp serve` launcher and traffic generator, and the
reference models the gate tests and the demo train. Needs the `dev` extra
(kmock, scikit-learn). Production packages never import it.
"""
