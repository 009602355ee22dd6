"""The stage ships task logs as CloudWatch takes them: one request per stream, in time order.

stdout and stderr are pumped by two threads, so their lines can reach the shipper out of
order; moto, like CloudWatch, refuses a whole PutLogEvents request that is not
chronological, and a lost batch hides the traceback diagnosis looks for.
"""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from stage.seed import LOG_GROUP, REGION
from stage.task_logs import chronological_batches

NOW_MS = int(time.time() * 1000)  # CloudWatch drops events older than its retention: stamps near now
OUT_OF_ORDER = [("task-a", NOW_MS + 2, "Traceback (most recent call last):"), ("task-a", NOW_MS, "INFO GET /health 200"),
                ("task-b", NOW_MS + 1, ""),
                ("task-a", NOW_MS + 2, "AttributeError: module 'secrets' has no attribute 'urlsafe'")]


def test_each_stream_is_one_batch_in_time_order_and_ties_keep_their_order() -> None:
    batches = chronological_batches(OUT_OF_ORDER)
    assert batches == {
        "task-a": [{"timestamp": NOW_MS, "message": "INFO GET /health 200"},
                   {"timestamp": NOW_MS + 2, "message": "Traceback (most recent call last):"},
                   {"timestamp": NOW_MS + 2, "message": "AttributeError: module 'secrets' has no attribute 'urlsafe'"}],
        "task-b": [{"timestamp": NOW_MS + 1, "message": " "}],  # CloudWatch takes no empty message
    }


@mock_aws
def test_cloudwatch_takes_the_batch_and_refuses_the_lines_as_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    logs = boto3.client("logs", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    logs.create_log_group(logGroupName=LOG_GROUP)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName="task-a")
    as_queued = [{"timestamp": stamp, "message": text} for stream, stamp, text in OUT_OF_ORDER if stream == "task-a"]
    with pytest.raises(ClientError, match="chronological order"):
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName="task-a", logEvents=as_queued)
    logs.put_log_events(logGroupName=LOG_GROUP, logStreamName="task-a",
                        logEvents=chronological_batches(OUT_OF_ORDER)["task-a"])
    shipped = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName="task-a")["events"]
    assert [event["message"] for event in shipped] == [event["message"] for event in
                                                       chronological_batches(OUT_OF_ORDER)["task-a"]]
