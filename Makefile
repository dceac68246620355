# Two commands set up a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: run test test-fast install java clean schemas bench package

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) java

# DynamoDB Local needs a Java runtime; install Debian's when missing.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "installing default-jre-headless (needed by DynamoDB Local)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq default-jre-headless; }

run: install
	PORT=$(PORT) $(PY) -m devstack

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow and not load and not fuzz"

clean:
	rm -rf $(VENV) .cache .devstack .pytest_cache

schemas: install
	$(PY) tools/export_schemas.py

bench: install
	$(PY) bench/cold_start.py
	$(PY) bench/ping_rtt.py

package: install
	AWS_DEFAULT_REGION=us-east-1 $(VENV)/bin/chalice package --stage $${STAGE:-dev} build/package
	@ls -l build/package/deployment.zip
