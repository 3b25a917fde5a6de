"""The structured formats' sniffers stay silent on the text-format datasets (and vice versa the
auto-detection over every registered format picks a structured format for structured files)."""

from __future__ import annotations

import gzip

import pytest

from dplogs.ingest.formats import registered
from tests.ingest.structured_helpers import detected

REGISTRY = registered()

STRUCTURED = ("jsonl", "windows", "evtx", "zeek", "cloudtrail", "csv", "parquet")
TEXT_FILES = [
    "auth_logs/elastic_examples_suspicious_login_auth.log.gz",
    "web_access/apache_logs_elastic_examples.log.gz",
    "evtx_attack_samples/Tunna_rdp_tunnel_IIS.log",
    "evtx_attack_samples/web_attack_and_isp_webshell_localhost_access_log.txt",
    "cef/fp-ngfw-smc.log",
    "cef/cef_elastic_vaporware.log",
    "loghub/OpenSSH/OpenSSH_2k.log",
    "loghub/Linux/Linux_2k.log",
]
STRUCTURED_FILES = {
    "otrf_security_datasets/windows_host/empire_psexec_dcerpc_tcp_svcctl_2020-09-20121608.json.gz": "windows",
    "otrf_security_datasets/lsass_campaign_01/metasploit_logonpasswords_lsass_memory_dump.json.gz": "windows",
    "evtx_attack_samples/evtx_attack_samples.jsonl.gz": "windows",
    "parser_oracles/elastic_beats_filebeat_2019/winlogbeat/sysmon/sysmon-9.01.evtx": "evtx",
    "zeek_wrccdc2018/zeek-default/dns.log.gz": "zeek",
    "zeek_wrccdc2018/zeek-json/smtp.json.gz": "zeek",
    "parser_oracles/elastic_beats_filebeat_2019/zeek/connection/connection-json.log": "zeek",
    "otrf_security_datasets/aws/ec2_proxy_s3_exfiltration_2020-09-14011940.json.gz": "cloudtrail",
    "parser_oracles/elastic_beats_filebeat_2019/suricata/eve/eve-alerts.log": "jsonl",
}


@pytest.mark.parametrize("name", TEXT_FILES)
def test_structured_sniffers_do_not_claim_text_logs(datasets_dir, name):
    raw = (datasets_dir / name).read_bytes()
    head = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)[: 64 * 1024]
    scores = {fmt: REGISTRY[fmt].sniff(head) for fmt in STRUCTURED if fmt in REGISTRY}
    assert all(score < 0.5 for score in scores.values()), scores
    assert detected(datasets_dir / name) not in STRUCTURED


@pytest.mark.parametrize("name", sorted(STRUCTURED_FILES))
def test_auto_detection_picks_the_structured_format(datasets_dir, name):
    assert detected(datasets_dir / name) == STRUCTURED_FILES[name]
