"""`mlcp`, the command line for CI and on-call: it talks to mlcp over HTTP and
imports neither Django nor Celery (`tests/cli/test_standalone.py`)."""
