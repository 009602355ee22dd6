"""The reports of an in-VPC run, carried through S3 to the caller outside the VPC (pytest-free).

The in-VPC run (``pytest smoke --results-uri s3://bucket/prefix/run-id/``) uploads its report
folder under that prefix when it ends; the caller (:mod:`ecs_verdict.remote`) lists the prefix
and writes every object into its own ``--report-dir``, by the same relative path, so
``verdict.json``, ``summary.md``, ``junit.xml`` and ``allure-results/`` are where a local run
would have left them. Why S3 and not CloudWatch Logs: docs/private-gate.md.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

S3_SCHEME = "s3://"
# S3's rule for a new bucket's name (general purpose buckets): 3-63 of these, starting and ending alnum.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
SKIPPED_FILES = frozenset({".smoke-write-probe"})
TRANSFER_THREADS = 8  # under botocore's 10 pooled connections per client


@dataclass(frozen=True, slots=True)
class ResultsLocation:
    """``s3://bucket/prefix/``: where one run's reports go; ``prefix`` is empty or ends with ``/``."""

    bucket: str
    prefix: str = ""

    @property
    def uri(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}"

    def __str__(self) -> str:
        return self.uri

    def child(self, name: str) -> ResultsLocation:
        """The location one level down (a run's own folder under the caller's prefix)."""
        return ResultsLocation(self.bucket, f"{self.prefix}{name.strip('/')}/")


def parse_results_uri(value: str) -> ResultsLocation:
    """``s3://bucket`` or ``s3://bucket/some/prefix``; ``ValueError`` naming the fix."""
    text = value.strip()
    if not text.startswith(S3_SCHEME):
        raise ValueError(f"{value!r} is not an S3 URI; give e.g. s3://my-smoke-results/gate")
    bucket, _, prefix = text[len(S3_SCHEME):].partition("/")
    if not BUCKET_NAME.match(bucket) or ".." in bucket:
        raise ValueError(f"{bucket!r} is not an S3 bucket name (3-63 lower-case letters, digits, '.' and '-')")
    prefix = prefix.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ValueError(f"{value!r} has an empty, '.' or '..' part in its prefix; give e.g. s3://{bucket}/gate")
    return ResultsLocation(bucket, f"{prefix}/" if prefix else "")


def upload_reports(s3: Any, report_dir: Path, location: ResultsLocation) -> list[str]:
    """Every file under ``report_dir`` to ``location``, by its relative path, TRANSFER_THREADS at a time; the keys."""
    files = sorted(p for p in report_dir.rglob("*") if p.is_file() and p.name not in SKIPPED_FILES)

    def put(path: Path) -> str:
        key = location.prefix + path.relative_to(report_dir).as_posix()
        s3.put_object(Bucket=location.bucket, Key=key, Body=path.read_bytes())  # small files: one PutObject each
        return key

    with ThreadPoolExecutor(max_workers=TRANSFER_THREADS) as pool:  # boto3 clients are thread-safe
        return list(pool.map(put, files))


def upload_run_reports(report_dir: Path, location: ResultsLocation, region: str | None) -> str | None:
    """The in-VPC run's end: its reports to ``location``; one line saying why not, or None."""
    from ecs_verdict.aws import make_clients, translate_aws_error  # boto3: only a run that uploads pays for it

    try:
        clients = make_clients(region)
        upload_reports(clients.client("s3"), report_dir, location)
    except Exception as error:  # noqa: BLE001 - whatever stopped it (AWS, the disk), the caller sees no verdict
        cause = translate_aws_error(error, region=region)
        return f"the reports were not uploaded to {location.uri}: {cause}"
    return None


def download_reports(s3: Any, location: ResultsLocation, report_dir: Path) -> list[Path]:
    """Every object under ``location`` into ``report_dir`` by its relative key; the files written.

    A key that would land outside ``report_dir`` (``..``, an absolute path) is skipped: the
    bucket is the caller's, but what an in-VPC run wrote is not trusted to name paths here.
    A run leaves a hundred small files or more (allure-results): they come TRANSFER_THREADS at a time.
    """
    root = report_dir.resolve()
    wanted: list[tuple[str, Path]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.prefix):
        for item in page.get("Contents", []):
            relative = PurePosixPath(item["Key"][len(location.prefix):])
            if not relative.parts or relative.is_absolute() or ".." in relative.parts:
                continue
            target = (root / Path(*relative.parts)).resolve()
            if root in target.parents:
                wanted.append((item["Key"], target))

    def fetch(key: str, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        body = s3.get_object(Bucket=location.bucket, Key=key)["Body"]
        try:
            target.write_bytes(body.read())
        finally:
            body.close()
        return target

    with ThreadPoolExecutor(max_workers=TRANSFER_THREADS) as pool:  # boto3 clients are thread-safe
        return list(pool.map(lambda pair: fetch(*pair), wanted))
