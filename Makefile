# Two commands a newcomer types: `make demo` and `make test`. Both create .venv when it is missing
# and install the project into it; nothing else on the machine is touched.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/actionrunner demo

# The whole suite. Redis: REDIS_URL, else 127.0.0.1:6379, else a private redis-server started by the
# tests themselves; without any, the Redis tests skip loudly (and fail when CI=true).
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
