"""AWS CloudTrail: Records documents (gzipped or not), JSON lines, the OTRF recording."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone

import polars as pl
from tests.ingest.structured_helpers import detected, lines_frame, parse

from dplogs.ingest.base import IngestOptions
from dplogs.ingest.cloudtrail import CloudTrail

FMT = CloudTrail()
RECORDS = [
    {"eventTime": "2021-02-03T04:05:06Z", "eventName": "ConsoleLogin", "eventSource": "signin.amazonaws.com",
     "awsRegion": "eu-west-1", "sourceIPAddress": "198.51.100.7", "userAgent": "Mozilla/5.0",
     "userIdentity": {"type": "IAMUser", "userName": "alice", "arn": "arn:aws:iam::1:user/alice"},
     "errorCode": "Failed authentication", "errorMessage": "Failed authentication"},
    {"eventTime": "2021-02-03T04:05:07Z", "eventName": "GetObject", "eventSource": "s3.amazonaws.com",
     "awsRegion": "us-east-1", "sourceIPAddress": "ec2.amazonaws.com",
     "userIdentity": {"type": "Root", "arn": "arn:aws:iam::123456789012:root"}},
    {"eventTime": "2021-02-03T04:05:08Z", "eventSource": "s3.amazonaws.com"},
    {"eventTime": "2021-02-03T04:05:09Z", "eventName": "AssumeRole", "eventSource": "sts.amazonaws.com",
     "sourceIPAddress": "2001:db8::1", "userIdentity": {"type": "AssumedRole",
     "arn": "arn:aws:sts::1:assumed-role/Admin/bob-session"}},
]


def _check_records(events, quarantine):
    assert events["user.name"].to_list() == ["alice", "root", "bob-session"]
    assert events["source.ip"].to_list() == ["198.51.100.7", None, "2001:db8::1"]
    assert events["event.outcome"].to_list() == ["failure", "success", "success"]
    assert events["event.action"].to_list() == ["ConsoleLogin", "GetObject", "AssumeRole"]
    assert events["event.category"].to_list() == [["authentication"], None, ["authentication"]]
    assert events["cloud.region"].to_list() == ["eu-west-1", "us-east-1", None]
    assert events["@timestamp"][0] == datetime(2021, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    assert set(events["event.dataset"]) == {"aws.cloudtrail"} and set(events["cloud.provider"]) == {"aws"}
    assert quarantine["reason"].to_list() == ["not a CloudTrail record (no eventName)"]
    assert quarantine["line"].to_list() == [3]


def test_records_document_gzipped_and_pretty_printed(tmp_path):
    path = tmp_path / "123_CloudTrail_eu-west-1_20210203T0405Z.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"Records": RECORDS}, indent=2).encode()))
    assert detected(path) == "cloudtrail"
    events, quarantine, _ = parse("cloudtrail", path)
    _check_records(events, quarantine)
    assert events["log.offset"].null_count() == 3 and events["event.hash"].n_unique() == 3
    again, _, _ = parse("cloudtrail", path)
    assert again["event.hash"].to_list() == events["event.hash"].to_list()  # re-ingestion is idempotent


def test_records_one_per_line():
    out = FMT.parse_lines(lines_frame(*(json.dumps(r) for r in RECORDS), "{not json"), "ct.jsonl", IngestOptions())
    reasons = out.quarantine["reason"].to_list()
    _check_records(out.events, out.quarantine.filter(pl.col("line") != 5))
    assert reasons[-1] == "not a JSON object" and out.events["log.offset"].to_list()[0] == 0


def test_broken_document_is_quarantined_whole(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"Records": [{"eventName": "x"}, ')
    events, quarantine, _ = parse("cloudtrail", path)
    assert events.height == 0
    assert quarantine["reason"].to_list() == ["invalid CloudTrail Records document"]


def test_sniff():
    assert FMT.sniff(b' {\n  "Records": [') > 0.95
    assert FMT.sniff((json.dumps(RECORDS[0]) + "\n").encode()) > 0.9
    assert FMT.sniff(b'{"@timestamp": "2024-01-01T00:00:00Z", "user.name": "a"}\n') == 0
    assert FMT.sniff(b'{"EventID": 4624, "Channel": "Security"}\n') == 0
    assert FMT.sniff(b"Feb 21 21:54:44 web1 sshd[3402]: Failed password for root\n") == 0


def test_otrf_cloudtrail_recording(datasets_dir):
    path = datasets_dir / "otrf_security_datasets/aws/ec2_proxy_s3_exfiltration_2020-09-14011940.json.gz"
    assert detected(path) == "cloudtrail"
    events, quarantine, _ = parse("cloudtrail", path)
    assert events.height == 103 and quarantine.height == 0
    # Independent oracle from the raw JSON: userName, else the ARN's last segment.
    with gzip.open(path, "rt") as f:
        raw = [json.loads(line) for line in f]
    expected = [r["userIdentity"].get("userName") or (r["userIdentity"].get("arn") or "").split("/")[-1] or None
                for r in raw]
    assert events["user.name"].to_list() == expected
    assert events["user.name"].value_counts().filter(pl.col("user.name") == "pedro")["count"].item() == 87
    ips = [r["sourceIPAddress"] if r["sourceIPAddress"][0].isdigit() else None for r in raw]
    assert events["source.ip"].to_list() == ips
    assert events["event.action"].to_list() == [r["eventName"] for r in raw]
    assert events["@timestamp"].null_count() == 0
