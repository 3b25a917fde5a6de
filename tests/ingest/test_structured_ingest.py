"""The structured formats end to end through ``ingest()``: auto-detection, the store, idempotency."""

from __future__ import annotations

import gzip
import json

import polars as pl

from dplogs.ingest.base import IngestOptions
from dplogs.ingest.ingest import ingest
from dplogs.ingest.store import Store

FILES = {
    "zeek_wrccdc2018/zeek-default/ntlm.log.gz": ("zeek", 422, 9),
    "otrf_security_datasets/windows_host/psh_lsass_memory_dump_comsvcs_2020-10-18T19500924.json.gz": ("windows", 184, 0),
    "otrf_security_datasets/aws/ec2_proxy_s3_exfiltration_2020-09-14011940.json.gz": ("cloudtrail", 103, 0),
    "parser_oracles/elastic_beats_filebeat_2019/winlogbeat/security/security-windows2012r2-logon.evtx": ("evtx", 18, 0),
}


def test_structured_files_into_one_store_idempotently(datasets_dir, tmp_path):
    paths = [datasets_dir / name for name in FILES]
    summary = ingest(paths, tmp_path / "store", options=IngestOptions())
    got = {f.name: (f.format, f.parsed, f.skipped) for f in summary.files}
    assert got == {str(datasets_dir / name): expected for name, expected in FILES.items()}
    assert summary.quarantined == 0
    store = Store.open(tmp_path / "store")
    stored = store.scan().select(pl.len()).collect().item()
    assert stored == sum(n for _, n, _ in FILES.values())
    # the same files again: nothing new
    again = ingest(paths, store)
    assert again.written == 0
    assert store.scan().select(pl.len()).collect().item() == stored
    by_module = dict(store.scan().group_by("event.module").len().collect().iter_rows())
    assert by_module == {"zeek": 422, "windows": 184 + 18, "aws": 103}


def test_records_documents_deduplicate_by_content_not_bytes(datasets_dir, tmp_path):
    """A CloudTrail file re-delivered with other formatting has other bytes (no fingerprint match)
    but the same records, so event.hash drops them."""
    path = datasets_dir / "otrf_security_datasets/aws/ec2_proxy_s3_exfiltration_2020-09-14011940.json.gz"
    with gzip.open(path, "rt") as f:
        records = [json.loads(line) for line in f]
    compact, pretty = tmp_path / "a.json", tmp_path / "b.json.gz"
    compact.write_text(json.dumps({"Records": records}))
    pretty.write_bytes(gzip.compress(json.dumps({"Records": records}, indent=4).encode()))
    first = ingest([compact], tmp_path / "store")
    second = ingest([pretty], tmp_path / "store")
    assert first.written == 103 and not second.files[0].duplicate_file
    assert second.parsed == 103 and second.written == 0
