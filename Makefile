# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The newest aiohttp release, for the loopback suite (aioresponses needs aiohttp < 3.14).
LATEST := .venv-latest
LATEST_PY := $(LATEST)/bin/python

.PHONY: system-deps test lint typecheck pytest pytest-latest install-check dist demo bench soak clean \
	test-matrix test-redis8 bench-pythons

$(VENV)/.installed: pyproject.toml constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints-dev.txt -e '.[dev,speed,cli,redis,metrics]'
	touch $@

$(LATEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(LATEST)
	$(LATEST_PY) -m pip install -q --upgrade pip
	$(LATEST_PY) -m pip install -q --upgrade -e '.[dev,speed,cli,redis,metrics]' aiohttp
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy --strict acp_async

# In parallel, one pytest-xdist worker per core, each with its own redis-server, ports and
# temporary directories; in a random order (pytest-randomly, seed in the header). The same
# suite passes serially (`-n 0`) and in file order (`-p no:randomly`).
XDIST ?= -n auto

pytest: $(VENV)/.installed
	$(PY) -m pytest $(XDIST)

# The loopback suite (everything but the aioresponses unit tests) on the newest aiohttp.
pytest-latest: $(LATEST)/.installed
	$(LATEST_PY) -c 'import aiohttp; print("aiohttp", aiohttp.__version__)'
	$(LATEST_PY) -m pytest $(XDIST) -m 'not aioresponses' -p no:cacheprovider

# Debian packages the tests run, as command:package: redis-server and redis-cli (the fleet
# tests need a real one, a Redis Cluster and a Sentinel), jq (the README's
# `runs poll --json | jq` example), promtool (the alert rules in docs/ are checked with
# it) and openssl (a private CA for the Redis TLS test); valkey-server 8 from backports
# (.ci/install-valkey). Installed here when missing and we are root, as on CI; elsewhere a
# note says what is missing.
SYSTEM_DEPS := redis-server:redis-server redis-cli:redis-tools jq:jq promtool:prometheus \
	openssl:openssl
system-deps:
	@missing=""; for pair in $(SYSTEM_DEPS); do \
		command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else echo "missing Debian packages:$$missing (not root: install them)"; fi; \
	fi
	@bash .ci/install-valkey

test: system-deps lint typecheck pytest pytest-latest install-check

# The sdist and the wheel in dist/, with their metadata checked (README renders on PyPI).
dist: $(VENV)/.installed
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist .
	$(PY) -m twine check --strict dist/*

# The wheel installed as a user would, in a fresh virtualenv outside the repository:
# `acp-async --version` and one `runs list` against `acp-async fake-server`.
install-check: dist
	PYTHON=$(PYTHON) bash .ci/install-check

# The reliability suite scaled up (20 chaos rounds of 500 servers on one client, a 2000-cycle
# watch under faults, 3000 Hypothesis bodies over HTTP); about two minutes, bounded by --timeout.
soak: $(VENV)/.installed
	ACP_SOAK=1 $(PY) -m pytest -q -s -p no:cacheprovider --timeout=900 \
		tests/test_chaos.py tests/test_long_watch.py tests/test_bad_input.py

demo: $(VENV)/.installed
	$(PY) -m acp_async demo

# Side-by-side benchmarks (about ten minutes); writes benchmarks/RESULTS.md.
$(VENV)/.bench-installed: $(VENV)/.installed benchmarks/requirements.txt
	$(PY) -m pip install -q -r benchmarks/requirements.txt
	touch $@

bench: $(VENV)/.bench-installed
	$(PY) -m benchmarks
	$(PY) -m benchmarks.metrics_cost   # its own section of RESULTS.md: metrics on vs off
	$(PY) -m benchmarks.send_path --write benchmarks/RESULTS.md   # the send path, layer by layer
	$(PY) -m benchmarks.poll_cost --write benchmarks/RESULTS.md   # an unchanged poll vs a bare GET

# The fan-out's (c) / (b) on CPython 3.11 and 3.13 side by side, in the test matrix's
# virtualenvs, in one time window (a few minutes); its own section of RESULTS.md.
bench-pythons: .venv-3.11/.installed .venv-3.13/.installed
	.venv-3.11/bin/python -m benchmarks.python_versions

# The test matrix: the whole suite on every supported CPython, each in its own .venv-3.X
# with the dev pins, then once more on 3.11 with the newest aiohttp, redis-py, cattrs, attrs
# and orjson that pyproject.toml's bounds allow (.venv-newest, upgraded on every run). Each
# interpreter is the newest 3.X.N build under ~/.pyenv/versions, else python3.X on PATH;
# none is ever downloaded, and a missing one fails the matrix rather than shrinking it.
PYENV_VERSIONS ?= $(HOME)/.pyenv/versions
MATRIX_PYTHONS := 3.11 3.12 3.13
NEWEST := .venv-newest
NEWEST_PACKAGES := aiohttp redis cattrs attrs orjson
EXTRAS := dev,speed,cli,redis,metrics
MATRIX_PYTEST := -m pytest -q $(XDIST) -p no:cacheprovider
# Prints the interpreter's and the named distributions' versions.
export VERSIONS := import importlib.metadata as m, platform, sys; \
	print("Python", platform.python_version(), *(f"{n} {m.version(n)}" for n in sys.argv[1:]))
find_python = $(or $(shell ls -1dv $(PYENV_VERSIONS)/$(1).*/bin/python$(1) 2>/dev/null \
	| grep -E '/$(subst .,\.,$(1))\.[0-9]+/bin/' | tail -n 1),$(shell command -v python$(1)))

# $(call new-venv,DIR,3.X): a fresh virtualenv DIR on CPython 3.X, with the newest pip.
define new-venv
	@python="$(call find_python,$(2))"; \
	[ -n "$$python" ] || { echo "no CPython $(2) under $(PYENV_VERSIONS) or on PATH" >&2; exit 1; }; \
	echo "$(1): $$python"; $$python -m venv --clear $(1)
	$(1)/bin/python -m pip install -q --upgrade pip
endef

.venv-3.%/.installed: pyproject.toml constraints-dev.txt
	$(call new-venv,$(@D),3.$*)
	$(@D)/bin/python -m pip install -q -c constraints-dev.txt -e '.[$(EXTRAS)]'
	touch $@

$(NEWEST)/.created:
	$(call new-venv,$(NEWEST),3.11)
	touch $@

# The newest run leaves out the `aioresponses` unit tests, as pytest-latest does: aioresponses
# 0.7.9, its newest release, cannot build a response for aiohttp 3.14 (its issue #289, open).
test-matrix: system-deps $(MATRIX_PYTHONS:%=.venv-%/.installed) $(NEWEST)/.created
	$(NEWEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[$(EXTRAS)]'
	@failed=""; summary=""; total_start=$$(date +%s); \
	for venv in $(MATRIX_PYTHONS:%=.venv-%) $(NEWEST); do \
		marks=""; [ $$venv = $(NEWEST) ] && marks="not aioresponses"; \
		echo "== $$venv: $$($$venv/bin/python -c "$$VERSIONS" $(NEWEST_PACKAGES))"; \
		start=$$(date +%s); \
		$$venv/bin/python $(MATRIX_PYTEST) $${marks:+-m "$$marks"} || failed="$$failed $$venv"; \
		summary="$$summary$$venv: $$(( $$(date +%s) - start )) s\n"; \
	done; \
	printf "== test-matrix wall time per run:\n$$summary"; \
	echo "== all runs: $$(( $$(date +%s) - total_start )) s"; \
	[ -z "$$failed" ] || { echo "test-matrix FAILED:$$failed" >&2; exit 1; }

# Not gating (neither `make test` nor .ci/run runs it): pyproject.toml keeps redis-py below
# 8, and docs/redis8-hang.md says why. The fleet tests on the newest redis-py 8 (in
# .venv-redis8, Python 3.11, the dev pins otherwise), then docs/redis_cancel.py's probe
# against a redis-server of its own on a Unix socket; the exit status is the tests'.
REDIS8 := .venv-redis8
REDIS8_TESTS := tests/test_fleet.py tests/test_fleet_processes.py tests/test_observability.py \
	tests/test_benchmarks_smoke.py -k fleet

$(REDIS8)/.installed: pyproject.toml constraints-dev.txt
	$(call new-venv,$(REDIS8),3.11)
	$(REDIS8)/bin/python -m pip install -q -c constraints-dev.txt -e '.[$(EXTRAS)]'
	touch $@

test-redis8: system-deps $(REDIS8)/.installed
	$(REDIS8)/bin/python -m pip install -q --upgrade 'redis>=8,<9'
	@echo "== $(REDIS8): $$($(REDIS8)/bin/python -c "$$VERSIONS" redis hiredis)"
	@status=0; $(REDIS8)/bin/python $(MATRIX_PYTEST) $(REDIS8_TESTS) || status=$$?; \
	dir="$$(mktemp -d)"; \
	redis-server --port 0 --unixsocket "$$dir/redis.sock" --save '' --appendonly no \
		--daemonize no >/dev/null & server=$$!; \
	for _ in $$(seq 100); do [ -S "$$dir/redis.sock" ] && break; sleep 0.05; done; \
	$(REDIS8)/bin/python docs/redis_cancel.py "unix://$$dir/redis.sock" || true; \
	kill $$server; wait $$server; rm -rf "$$dir"; \
	if [ $$status = 0 ]; then echo "test-redis8: the fleet tests pass on redis-py 8"; \
	else echo "test-redis8: the fleet tests FAIL on redis-py 8 (exit $$status)"; fi; \
	exit $$status

clean:
	rm -rf $(VENV) $(LATEST) .venv-3.* $(NEWEST) $(REDIS8) .mypy_cache .pytest_cache \
		.ruff_cache dist
