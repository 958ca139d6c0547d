# Common tasks. Everything runs from the project's own virtual environment (.venv).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

TOOLS := .venv-tools
IMAGE ?= pulling-agent:dev
NAMESPACE ?= pulling-agent
OVERLAY ?= production

.PHONY: help browser faketime promtool docker-engine install tools demo run test test-unit test-coverage lint format bench clean \
	docker-build dev-token \
	docker-run security lock k8s-render k8s-validate k8s-deploy k8s-logs k8s-status k8s-pause k8s-resume

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(BIN)/pulling-agent ## the project's venv (.venv) with the dev tools

# every dependency from requirements-dev.lock, each file checked against its hash; then the
# project itself (editable, no dependencies: they are all in the lock)
$(BIN)/pulling-agent: pyproject.toml requirements.lock requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# Offline validators (checkov, kubernetes-validate, yamllint, hadolint, shellcheck) in
# their own venv, so their dependencies never meet the agent's.
tools: $(TOOLS)/bin/checkov $(TOOLS)/bin/helm ## the offline validators and helm (.venv-tools)

$(TOOLS)/bin/helm: scripts/install-helm.sh | $(TOOLS)/bin/checkov
	scripts/install-helm.sh $(TOOLS)/bin

$(TOOLS)/bin/checkov: deploy/tools-requirements.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet -r deploy/tools-requirements.txt
	touch $@

demo: install ## the whole system on sample work (embedded server)
	$(BIN)/pulling-agent demo

# Debian's chromium for the console's browser tests (tests/system/test_console_browser.py)
browser: ## Debian's chromium for the console's browser tests (as root)
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "browser tests need chromium: sudo apt-get install chromium"; fi; }

# Debian's libfaketime for the clock-skew system tests (tests/system/test_clock_skew.py)
faketime: ## Debian's libfaketime for the clock-skew tests (as root, or with sudo)
	@ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null; \
		elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
			sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null; \
		else echo "clock-skew tests need libfaketime: sudo apt-get install faketime"; fi; }

# Debian's prometheus package for promtool: the alerts' unit tests (tests/deploy/test_alerts.py)
promtool: ## Debian's promtool for the alert tests (as root, or with sudo)
	@command -v promtool >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
		elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
			sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
		else echo "alert tests need promtool: sudo apt-get install prometheus"; fi; }

test: install tools browser faketime promtool docker-engine ## the whole suite, what CI runs
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/python -m pytest

# the fast loop while editing: no server, no apt installs, a few seconds
test-unit: install ## the unit tests only
	$(BIN)/python -m pytest tests/unit -q

# line coverage of src/ over the unit and integration tests (the system tests run the agent
# in other processes, which coverage does not follow); htmlcov/index.html for the details
test-coverage: install ## coverage of the unit and integration tests
	$(BIN)/python -m pytest tests/unit tests/integration -q --cov=pulling_agent \
		--cov-report=term-missing:skip-covered --cov-report=html

# one agent against the embedded development server, its data in .devdata (kept, and its
# address too): HANDLER=myapp.jobs:handle make run
run: install ## run one agent on the embedded server (development; HANDLER=... make run)
	$(BIN)/pulling-agent run --embedded .devdata

lint: install ## ruff and mypy --strict
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

format: install ## ruff fix and format
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

# bandit on src/ (skips justified in .bandit.yaml) and a dependency audit of
# requirements.lock (needs the vulnerability database online; says so when unreachable)
SECURITY := .venv-security
security: ## bandit and a dependency audit
	test -x $(SECURITY)/bin/pip-audit || { $(PYTHON) -m venv $(SECURITY) && \
		$(SECURITY)/bin/python -m pip install --quiet bandit pip-audit pip-tools; }
	SECURITY_VENV=$(SECURITY) scripts/security.sh

# re-pin the dependencies with their hashes (then run make security): requirements.lock, the
# runtime's (the image installs it), and requirements-dev.lock, the runtime's at the same
# pins plus the dev extra's (make install). No index or local wheel directory is written in.
PIP_COMPILE = $(SECURITY)/bin/pip-compile --quiet --generate-hashes --strip-extras --no-header \
	--no-emit-index-url --no-emit-find-links
lock: ## re-pin the dependencies, with hashes
	test -x $(SECURITY)/bin/pip-compile || $(MAKE) security
	$(PIP_COMPILE) --output-file=requirements.lock pyproject.toml
	cp requirements.lock requirements-dev.lock.tmp
	$(PIP_COMPILE) --extra dev --output-file=requirements-dev.lock.tmp pyproject.toml
	$(PYTHON) scripts/strip-self.py requirements-dev.lock.tmp > requirements-dev.lock
	rm requirements-dev.lock.tmp

bench: install ## the benchmarks (tables in docs/BENCHMARKS.md)
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.pause_propagation
	$(BIN)/python -m bench.hardening
	$(BIN)/python -m bench.rate_limit
	$(BIN)/python -m bench.console
	$(BIN)/python -m bench.request_limits
	$(BIN)/python -m bench.fleet_scale
	$(BIN)/python -m bench.claim_model

# The image, built from wheels made here for the image's Python (IMAGE_PYTHON): the build
# itself needs no network. With no registry reachable, set BASE_IMAGE to a local base image:
# the image tests build pulling-agent-base:bookworm from Debian's packages with mmdebstrap
# (tests/deploy/conftest.py) and use it.
IMAGE_PYTHON ?= 3.12
# more requirements for the image, e.g. nx-27017 for docker-compose.yml
EXTRA_WHEELS ?=
BASE_IMAGE ?= python:3.12-slim
WHEEL_TARGET = --only-binary=:all: --python-version $(IMAGE_PYTHON) --implementation cp \
	--platform manylinux2014_$(shell uname -m) --platform manylinux_2_17_$(shell uname -m) \
	--platform manylinux_2_28_$(shell uname -m)
docker-build: install ## the image, from wheels made here
	rm -rf dist/wheels
	mkdir -p dist/wheels/extra
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist/wheels .
	cp requirements.lock dist/wheels/
	$(BIN)/python -m pip download --quiet --dest dist/wheels $(WHEEL_TARGET) \
		--require-hashes -r requirements.lock
	test -z "$(EXTRA_WHEELS)" || $(BIN)/python -m pip download --quiet --dest dist/wheels/extra \
		$(WHEEL_TARGET) $(EXTRA_WHEELS)
	docker build --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

# Debian's Docker engine and mmdebstrap for the image tests (they start dockerd on a
# private socket and build the base image themselves, cached outside the checkout)
docker-engine: ## Debian's Docker engine and mmdebstrap for the image tests (as root)
	@scripts/docker-engine.sh

# docker-compose.yml's admin token: random, per checkout, in .env (ignored by git and docker)
dev-token: ## a development API token for docker-compose, in .env
	@if grep -qs '^PULLING_AGENT_DEV_TOKEN=' .env; then echo "dev token already in .env"; else \
		echo "PULLING_AGENT_DEV_TOKEN=dev-$$($(PYTHON) -c 'import secrets; print(secrets.token_hex(16))')" >> .env && \
		echo "dev token written to .env (sign in to the console with it)"; fi

docker-run: ## run the image (MONGODB_URI, HANDLER... from the environment)
	docker run --rm -e MONGODB_URI -e MONGODB_DATABASE -e MONGODB_COLLECTION -e HANDLER \
		-p 8000:8000 $(IMAGE)

k8s-render: ## print an overlay (OVERLAY=production)
	kubectl kustomize deploy/k8s/overlays/$(OVERLAY)

k8s-validate: install tools ## the deploy tests only
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/python -m pytest tests/deploy -q

k8s-deploy: ## kubectl apply -k the overlay
	kubectl apply -k deploy/k8s/overlays/$(OVERLAY)

k8s-logs: ## follow the agents' logs
	kubectl --namespace $(NAMESPACE) logs -f deployment/pulling-agent

k8s-status: ## the deployment, pods and the fleet's state
	kubectl --namespace $(NAMESPACE) get deployment,pods,service -l app.kubernetes.io/name=pulling-agent
	NAMESPACE=$(NAMESPACE) scripts/control-agent.sh status

k8s-pause: ## pause the fleet (control-agent.sh)
	NAMESPACE=$(NAMESPACE) scripts/control-agent.sh pause

k8s-resume: ## resume the fleet
	NAMESPACE=$(NAMESPACE) scripts/control-agent.sh resume

clean: ## remove the venvs and build output
	rm -rf $(VENV) $(TOOLS) $(SECURITY) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache \
		htmlcov .coverage
