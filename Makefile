# Two commands matter: `make run` (synthesize the embedded school database) and `make test`.
# Both create .venv/ and install everything on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
TORCH  := torch==2.13.0
PYTHON ?= python3

.PHONY: install run test bench dev clean cluster-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv
	# The CPU build of torch first (pip finds a local wheel where one is configured);
	# a plain `torch` requirement could otherwise pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	# Compile bytecode at install: where PYTHONDONTWRITEBYTECODE is set, every process would
	# otherwise recompile dagster, great_expectations, sdv... from source (~12 s per start).
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -e ".[dev,benchmark]"
	touch $@

run: install
	$(VENV)/bin/synth-pipeline demo

# two worker processes (models compute with one thread each): the slow tests start first
test: install
	$(PY) -m pytest -n 2 --dist worksteal --durations=15

bench: install
	$(PY) -m synth_pipeline.evaluation.benchmark

dev: install
	$(VENV)/bin/dagster dev

# The demo through Dagster's Celery executor: a local Redis broker and two dagster-celery
# workers (installs redis-server with apt-get where it is missing, and the cluster extra
# at the installed dagster's version). Not part of `make test`.
cluster-demo: install
	command -v redis-server >/dev/null || apt-get install -y --no-install-recommends redis-server
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[cluster]" \
		"dagster==$$($(PY) -c 'import dagster; print(dagster.__version__)')"
	$(PY) -m synth_pipeline.evaluation.cluster

clean:
	rm -rf data/output data/school/school.duckdb
