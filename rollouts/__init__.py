"""Rollouts: canary strategies, analysis from Prometheus, and the controller loop."""
