# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

# Every dependency at an exact version with its hashes (docs/operations.md, "Upgrading dependencies"):
# requirements.lock for development and CI (runtime, test tools, pip and setuptools),
# requirements-runtime.lock for the image (the worker's part of it, with the build backend),
# requirements-edges.lock for the MTA and shipper hosts (the light part: no Faust, chdb or Arrow).
LOCK := requirements.lock
RUNTIME_LOCK := requirements-runtime.lock
EDGES_LOCK := requirements-edges.lock
# The lock tool, pinned: another uv release may resolve or write the files differently. It lives
# in a venv of its own, outside the project's, one per version.
UV_VERSION := 0.13.8
UV := .lock-tool/uv-$(UV_VERSION)/bin/uv
# Resolved for CI and the image (python:3.11-slim) whatever machine runs `make lock`; the hashes
# cover every file of each pinned version.
LOCK_FLAGS := --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	--custom-compile-command "make lock"
# `make lock UPGRADE="faust-streaming aiokafka"` moves those packages to the newest versions
# pyproject.toml allows; the other pins stay where they are unless a bound forces them to move.
UPGRADE ?=

.PHONY: demo test test-unit test-confluent venv lock kafka-start kafka-stop

# Every package from the lock, wheels only (an sdist's build would fetch unhashed build tools);
# then patchgate itself, in a second step since a local folder has no hash to check: without
# dependencies (all came from the lock), built by the locked setuptools. Re-run when a pin or a
# declared dependency changes. pip installs over what is there: after a package leaves the lock,
# `rm -rf .venv && make venv` gives an environment with exactly the lock.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --require-hashes --only-binary :all: -r $(LOCK)
	$(VENV)/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)

$(UV):
	$(PYTHON) -m venv $(dir $(@D))
	$(dir $(@D))bin/python -m pip install -q uv==$(UV_VERSION)

# The full lock has every extra. The others are resolved under it as constraints, so all pin the
# same versions. The runtime lock adds pyproject.toml's build requirements: the image builds
# patchgate without build isolation. The edges lock has none: those hosts install a built wheel.
lock: $(UV)
	$(UV) pip compile pyproject.toml --all-extras $(LOCK_FLAGS) \
		$(foreach name,$(UPGRADE),--upgrade-package $(name)) --output-file $(LOCK)
	$(PYTHON) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], sep='\n')" \
		| $(UV) pip compile pyproject.toml - --extra worker $(LOCK_FLAGS) --constraints $(LOCK) \
		--output-file $(RUNTIME_LOCK)
	$(UV) pip compile pyproject.toml --extra mta --extra shipper $(LOCK_FLAGS) --constraints $(LOCK) \
		--output-file $(EDGES_LOCK)

demo: $(STAMP)
	bash deploy/demo.sh

test: $(STAMP)
	bash deploy/test.sh

# The integration suite with every command writing the Confluent wire format, against a schema
# registry double on loopback (tests/schema_registry_double.py).
test-confluent: $(STAMP)
	PATCHGATE_WIRE_FORMAT=confluent bash deploy/test.sh -m integration tests/integration

# The inner loop: the unit tests, under a minute, with neither a broker nor the Debian packages.
test-unit: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests/unit

kafka-start:
	bash deploy/kafka/kafka.sh start

kafka-stop:
	bash deploy/kafka/kafka.sh stop
