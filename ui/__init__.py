"""The web UI's shell, shared by `registry/ui` and `rollouts/ui`: the base template, sign-in and out, the
stylesheet, access control for pages (`ui.access`) and the SVG primitives charts are drawn with (`ui.svg`)."""
