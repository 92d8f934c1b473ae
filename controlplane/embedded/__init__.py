"""Embedded stand-ins on loopback for `make demo` and the tests: a Kubernetes API emulator, Prometheus."""
