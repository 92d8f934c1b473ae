"""Embedded stand-ins on loopback for `make demo`, the tests and the benches: a Kubernetes API emulator, Prometheus."""
