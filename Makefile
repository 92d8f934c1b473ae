# mlcp: `make test` and `make demo` install what they need on a fresh Debian machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# stress-ng: `make test-under-load` runs the suite beside it.
SYSTEM_PACKAGES := postgresql redis-server prometheus prometheus-alertmanager bubblewrap stress-ng chromium
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
DEMO_PORT ?= 8000

.PHONY: test test-under-load chaos demo system-deps venv bench lint clean

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "==> installing system packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	@echo "==> creating $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first: an unpinned resolve would pull gigabytes of CUDA wheels.
	$(PY) -m pip install -q "torch==2.13.0"
	# `dev`: the demo's and tests' own tools (devtools/: kmock, scikit-learn); `test`: pytest and friends.
	$(PY) -m pip install -q -e ".[test,dev]"
	touch $@

venv: $(VENV)/.installed

TEST := $(PY) -m tests.harness --db both

test: system-deps venv
	$(TEST)

# The suite may not depend on this machine's speed: two busy CPUs beside it must not fail a test. stress-ng
# stops when the suite ends, however it ends, and the suite's exit status is the target's.
test-under-load: system-deps venv
	@stress-ng --cpu 2 --quiet & stress=$$!; \
	trap 'kill $$stress 2>/dev/null' INT TERM; \
	$(TEST); status=$$?; \
	kill $$stress 2>/dev/null; wait $$stress 2>/dev/null; \
	exit $$status

# The long chaos run: 100 rollouts, controllers killed at random and racing, 20% of Kubernetes calls failing
# (`make test` runs a short one). MLCP_CHAOS_SEED picks another run.
chaos: system-deps venv
	MLCP_CHAOS=long $(PY) -m tests.harness --db sqlite -- tests/rollouts/test_chaos.py -s -q

demo: system-deps venv
	$(PY) manage.py demo --port $(DEMO_PORT)

# Each bench prints its figures beside a baseline measured in the same run, and the machine it ran on.
bench: system-deps venv
	$(PY) bench/ingest_throughput.py
	$(PY) bench/registry_latency.py
	$(PY) bench/controller_scale.py
	$(PY) bench/rollback_detection.py
	$(PY) bench/gates_real_size.py
	$(PY) bench/gate_throughput.py
	$(PY) bench/analysis_calibration.py --rollouts 200 --trials 30

clean:
	rm -rf $(VENV) data
