"""The model registry: models, versions, content-addressed signed artifacts, aliases, audit."""
