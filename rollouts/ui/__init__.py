"""The on-call web UI for rollouts: lists, a rollout's analysis history drawn as SVG, and its controls."""
