# Two commands set up a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: run test test-fast install test-deps java clamav chromium clean schemas bench package

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) java

# Test-only system packages (the browser and the virus scanner) are not needed to run the product.
test-deps: install clamav chromium

# DynamoDB Local needs a Java runtime; install Debian's when missing.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "installing default-jre-headless (needed by DynamoDB Local)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq default-jre-headless; }

# The web client's browser tests (tests/e2e/test_web.py) drive Debian's chromium
# through Playwright; Playwright never downloads a browser of its own. The emoji font
# only makes the screenshots (test-artifacts/, docs/web-client.png) show reactions and icons.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (needed by the browser tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium fonts-noto-color-emoji; }

# The clamd adapter's tests run a real clamd with a signature database they build
# (tests/unit/test_scanner.py; skipped when clamd is missing): Debian's clamd binary and sigtool; the tests
# start their own daemon, the packaged service is not used.
clamav:
	@{ command -v clamd >/dev/null 2>&1 || test -x /usr/sbin/clamd; } && command -v sigtool >/dev/null 2>&1 || { \
	  echo "installing clamav-daemon (needed by the clamd scanner tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq clamav-daemon; }

run: install
	PORT=$(PORT) $(PY) -m devstack

test: test-deps
	$(PY) -m pytest

test-fast: test-deps
	$(PY) -m pytest -m "not slow and not load and not fuzz"

clean:
	rm -rf $(VENV) .cache .devstack .pytest_cache

schemas: install
	$(PY) tools/export_schemas.py

# Every benchmark, bounded (each starts its own stack; figures and JSON under bench/results/,
# described in docs/proof.md); the cost model last, from the figures just measured.
bench: install
	$(PY) bench/cold_start.py
	$(PY) bench/ping_rtt.py
	$(PY) bench/send_cost.py
	$(PY) bench/action_cost.py
	$(PY) bench/presence_cost.py
	$(PY) bench/dlp_cost.py
	$(PY) bench/delivery_scale.py
	$(PY) bench/delivery_model.py
	$(PY) bench/hot_group.py
	$(PY) bench/email_claims.py
	$(PY) bench/push_cost.py
	$(PY) bench/experts_cost.py
	$(PY) bench/cost_model.py --json

# The merged template is the whole stage: the app (Chalice) plus infra/ (tables,
# bucket, alarms). Refuses to package when infra/ is stale against the models.
# Chalice writes one deployment.zip for all functions; split_package cuts one zip
# per function (build/package/functions/, what its handler can import) and points
# each CodeUri at it; check_function_zips imports each zip alone or fails.
package: install
	$(PY) tools/render_infra.py --stage $(STAGE) --check
	AWS_DEFAULT_REGION=us-east-1 $(VENV)/bin/chalice package --stage $(STAGE) \
	    --merge-template infra/resources-$(STAGE).json build/package
	$(PY) tools/split_package.py build/package
	$(PY) tools/check_function_zips.py build/package

# --- deployment (docs/operations.md) -------------------------------------------
STAGE ?= dev
# Fixed on purpose: the functions' log permissions (tools/render_infra.py) cover
# log groups /aws/lambda/<app>-<stage>-*, and CloudFormation names functions
# <stack>-<LogicalId>-<suffix>.
STACK := enterprise-chat-$(STAGE)
DEPLOY_BUCKET ?=
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

.PHONY: infra lint-infra deploy

# Regenerate infra/resources-<stage>.json and .chalice/policy-<stage>.json from
# chalicelib/models/, .chalice/config.json and app.py (rerun after changing them).
infra: $(STAMP)
	$(PY) tools/render_infra.py --stage dev
	$(PY) tools/render_infra.py --stage prod

# checkov lives in its own virtualenv: its dependency pins clash with the app's.
$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

# cfn-lint and checkov on the packaged template; a checkov finding fails unless
# infra/checkov-suppressions.yaml lists it with a reason.
lint-infra: package $(CHECKOV_STAMP)
	$(VENV)/bin/cfn-lint build/package/sam.json
	$(PY) tools/render_infra.py --stage $(STAGE) --check-alarms build/package/sam.json
	$(CHECKOV_VENV)/bin/checkov --file build/package/sam.json --framework cloudformation \
	    --skip-download --soft-fail --output json > build/checkov.json
	$(CHECKOV_VENV)/bin/python tools/checkov_gate.py build/checkov.json infra/checkov-suppressions.yaml

# `chalice deploy` cannot merge templates: deploy the packaged template with
# CloudFormation. Needs the AWS CLI and credentials; DEPLOY_BUCKET holds the code
# zips (`aws cloudformation package` uploads each function's CodeUri zip).
deploy: package
	@test -n "$(DEPLOY_BUCKET)" || { echo "usage: make deploy STAGE=dev|prod DEPLOY_BUCKET=<s3 bucket>" >&2; exit 2; }
	aws cloudformation package --template-file build/package/sam.json \
	    --s3-bucket $(DEPLOY_BUCKET) --output-template-file build/package/packaged.yaml
	aws cloudformation deploy --template-file build/package/packaged.yaml --stack-name $(STACK) \
	    --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset
