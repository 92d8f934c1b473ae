"""The gate sandbox: where uploaded models and golden sets are parsed, converted and run.

An upload is hostile input. Signing proves its bytes were stored unmodified, not
that they are safe to load, so the gate worker (which holds the database, the
broker and the signing key) never loads one itself. It hands a copy of the
verified bytes to a child process that holds no secret, sees none of the
worker's files, has no network, runs under resource limits, and answers with
one bounded JSON document (plus, for conversion and quantization, one derived
artifact that the worker then ingests as the hostile input it is).

The worker side is `runner.run_job()` (and `isolation.require_isolation()`, which
the worker calls at start to refuse running gates without isolation); the
child side is `protocol` and `jobs`, which import neither Django nor Celery
settings, so nothing in the child can reach them.
"""
