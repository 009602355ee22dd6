# syntax=docker/dockerfile:1
# The smoke harness as an image: `pytest smoke` for the scheduled canary on ECS Fargate
# (infra/canary.yaml passes the canary's arguments as the task definition's command).
# The suite it runs is the stage `suite` below: CivicForge's by default; another team's replaces it
# with a named build context (BuildKit, Docker 23+), its project folder, e.g. the example's:
#   docker build --build-context suite=examples/items_service --tag items-smoke .
# That folder holds what `pytest smoke` loads from the working directory: its pytest.ini (with
# smoke_suites), its conftest.py and plugin, its smoke/ tests, and a requirements.txt for what it
# imports beyond the harness (installed here; its pytest-ecs-verdict line is met by the harness).
# See docs/adopting.md.
# It runs as a non-root user on a read-only root file system: the one writable path is /reports,
# where the task definition mounts a volume; nothing else is written at run time.
#
# The base image is pinned by digest, so every build starts from the same Python and Debian.
# The digest was not resolved on the machine that wrote this (no Docker engine, no registry pull):
# refresh it before the first build and whenever the base should move, with
#   docker buildx imagetools inspect python:3.11-slim
# (the "Digest:" line of the index, the one that covers every platform).
# The default suite: CivicForge's plugin registry, ini, plugin, contract and tests (not stage/, tests/
# or bench/: the harness's own test infrastructure).
FROM scratch AS suite
COPY conftest.py pytest.ini /
COPY plugins/ /plugins/
COPY contracts/ /contracts/
COPY smoke/ /smoke/

FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# No .pyc files (the code is read-only at run time) and no pip cache in the image.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A system user with a fixed, numeric id (so a runtime can check it is not root) and no home;
# /reports belongs to it, and ECS copies the image's /reports, owner included, into the volume.
RUN groupadd --system --gid 10001 smoke \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin smoke \
 && mkdir /reports \
 && chown 10001:10001 /reports

WORKDIR /app

# The harness (pytest-ecs-verdict, built from src/) and its runtime dependencies only:
# requirements-dev.txt (moto, FastAPI, the linters) stays out.
# Its sources go once it is installed: /app is the suite's alone.
COPY requirements.txt pyproject.toml README.md ./
COPY src/ src/
RUN pip install --no-cache-dir -r requirements.txt && rm -rf src build requirements.txt pyproject.toml README.md

# Only what `pytest smoke` loads besides the harness: the suite, and what it imports beyond the harness
# (a suite that brings a requirements.txt; CivicForge's needs nothing more).
COPY --from=suite / ./
RUN test ! -f requirements.txt || pip install --no-cache-dir -r requirements.txt

# Every file a run writes goes under /reports: verdict.json, summary.md, junit.xml,
# allure-results/ (all under the report folder) and the membership ledger.
ENV SMOKE_REPORT_DIR=/reports \
    SMOKE_LEDGER=/reports/ledger.jsonl
VOLUME ["/reports"]

USER 10001:10001

# The cache provider would write .pytest_cache next to pytest.ini, on the read-only root.
ENTRYPOINT ["pytest", "smoke", "-p", "no:cacheprovider"]
