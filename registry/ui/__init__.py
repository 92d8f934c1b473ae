"""The approvers' web UI: server-rendered pages over the registry, gate evidence drawn as inline SVG."""
