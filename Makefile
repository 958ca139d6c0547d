# Common tasks. Everything runs from the project's own virtual environment (.venv).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

TOOLS := .venv-tools
IMAGE ?= pulling-agent:dev
NAMESPACE ?= pulling-agent
OVERLAY ?= production

.PHONY: browser docker-engine install tools demo test lint format bench clean docker-build docker-run security lock \
	k8s-render k8s-validate k8s-deploy k8s-logs k8s-status k8s-pause k8s-resume

install: $(BIN)/pulling-agent

$(BIN)/pulling-agent: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint requirements.lock -e '.[dev]'
	touch $@

# Offline validators (checkov, kubernetes-validate, yamllint, hadolint, shellcheck) in
# their own venv, so their dependencies never meet the agent's.
tools: $(TOOLS)/bin/checkov $(TOOLS)/bin/helm

$(TOOLS)/bin/helm: scripts/install-helm.sh | $(TOOLS)/bin/checkov
	scripts/install-helm.sh $(TOOLS)/bin

$(TOOLS)/bin/checkov: deploy/tools-requirements.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet -r deploy/tools-requirements.txt
	touch $@

demo: install
	$(BIN)/pulling-agent demo

# Debian's chromium for the console's browser tests (tests/system/test_console_browser.py)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "browser tests need chromium: sudo apt-get install chromium"; fi; }

test: install tools browser docker-engine
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

# bandit on src/ (skips justified in .bandit.yaml) and a dependency audit of
# requirements.lock (needs the vulnerability database online; says so when unreachable)
SECURITY := .venv-security
security:
	test -x $(SECURITY)/bin/pip-audit || { $(PYTHON) -m venv $(SECURITY) && \
		$(SECURITY)/bin/python -m pip install --quiet bandit pip-audit pip-tools; }
	SECURITY_VENV=$(SECURITY) scripts/security.sh

# re-pin the runtime dependencies (then run make security)
lock:
	test -x $(SECURITY)/bin/pip-compile || $(MAKE) security
	$(SECURITY)/bin/pip-compile --quiet --strip-extras --no-header \
		--output-file=requirements.lock pyproject.toml

bench: install
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.pause_propagation
	$(BIN)/python -m bench.hardening
	$(BIN)/python -m bench.rate_limit
	$(BIN)/python -m bench.console

# The image, built from wheels made here for the image's Python (IMAGE_PYTHON): the build
# itself needs no network. BASE_IMAGE=pulling-agent-base:bookworm (make docker-base) when no
# registry is reachable.
IMAGE_PYTHON ?= 3.12
# more requirements for the image, e.g. nx-27017 for docker-compose.yml
EXTRA_WHEELS ?=
BASE_IMAGE ?= python:3.12-slim
docker-build: install
	rm -rf dist/wheels
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist/wheels .
	$(BIN)/python -m pip download --quiet --dest dist/wheels --only-binary=:all: \
		--python-version $(IMAGE_PYTHON) --platform manylinux2014_$(shell uname -m) \
		--platform manylinux_2_17_$(shell uname -m) --platform manylinux_2_28_$(shell uname -m) \
		--implementation cp -r requirements.lock $(EXTRA_WHEELS)
	docker build --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

# Debian's Docker engine and mmdebstrap for the image tests (they start dockerd on a
# private socket and build the base image themselves, cached outside the checkout)
docker-engine:
	@scripts/docker-engine.sh

docker-run:
	docker run --rm -e MONGODB_URI -e MONGODB_DATABASE -e MONGODB_COLLECTION -e HANDLER \
		-p 8000:8000 $(IMAGE)

k8s-render:
	kubectl kustomize deploy/k8s/overlays/$(OVERLAY)

k8s-validate: install tools
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/python -m pytest tests/deploy -q

k8s-deploy:
	kubectl apply -k deploy/k8s/overlays/$(OVERLAY)

k8s-logs:
	kubectl --namespace $(NAMESPACE) logs -f deployment/pulling-agent

k8s-status:
	kubectl --namespace $(NAMESPACE) get deployment,pods,service -l app.kubernetes.io/name=pulling-agent
	NAMESPACE=$(NAMESPACE) scripts/control-agent.sh status

k8s-pause:
	NAMESPACE=$(NAMESPACE) scripts/control-agent.sh pause

k8s-resume:
	NAMESPACE=$(NAMESPACE) scripts/control-agent.sh resume

clean:
	rm -rf $(VENV) $(TOOLS) $(SECURITY) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
