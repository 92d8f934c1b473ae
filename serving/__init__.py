"""`mlcp serve`: a reference model server for canary rollouts.

It serves only bytes that verify against a model-signing bundle, answers
predictions over HTTP, and exports the request counter and latency histogram
that the rollout analysis (`rollouts.metrics`) queries, per model, version and
track. A fault switch makes it fail or slow down on demand, for demos and tests.

It runs in every serving pod, so it imports neither Django nor Celery (nor any
other mlcp package); `tests/serving/test_standalone.py` holds it to that.
"""
