"""The scheduling recipes of docs/scheduling.md: unit files verified, exit codes consistent, and
the exact cron / systemd / Airflow command lines run against the sample store."""

from __future__ import annotations

import ast
import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dplogs.errors import EXIT_CODES
from dplogs.privacy.ledger import Ledger
from tests.report.conftest import NIGHTLY, REPO

DOCS = REPO / "docs"
RETRY = {75}
STOP = set(EXIT_CODES.values()) - {1, 75}  # every documented failure but the temporary one


def _unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#",))
    cp.optionxform = str  # keys are case-sensitive
    cp.read_string(re.sub(r"^Environment=", lambda m: f"Environment{next(_n)}=", (DOCS / "systemd" / name).read_text(), flags=re.M))
    return cp


_n = iter(range(10**6))


def _env(cp: configparser.ConfigParser) -> dict[str, str]:
    return dict(v.split("=", 1) for k, v in cp["Service"].items() if k.startswith("Environment"))


def test_units_parse_and_say_what_the_docs_say():
    service, timer = _unit("dplogs-report.service"), _unit("dplogs-report.timer")
    assert service["Service"]["Type"] == "oneshot" and "--catch-up" in service["Service"]["ExecStart"]
    assert {int(c) for c in service["Service"]["RestartPreventExitStatus"].split()} == STOP
    assert service["Service"]["Restart"] == "on-failure"
    assert timer["Timer"]["Persistent"] == "true" and timer["Timer"]["OnCalendar"]
    assert timer["Install"]["WantedBy"] == "timers.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    for f in (DOCS / "systemd").iterdir():
        shutil.copy(f, tmp_path / f.name)
    out = subprocess.run(["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.iterdir())],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    ours = [line for line in out.stderr.splitlines() if "dplogs-report" in line]
    assert ours == [], ours  # systemd-analyze only warns about unknown keys and bad values


def test_airflow_dag_retries_only_75():
    tree = ast.parse((DOCS / "airflow" / "dplogs_report.py").read_text())
    consts = {t.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name) and t.id in ("RETRY_EXIT_CODES", "STOP_EXIT_CODES")}
    assert consts == {"RETRY_EXIT_CODES": RETRY, "STOP_EXIT_CODES": STOP}
    table = (DOCS / "scheduling.md").read_text()
    assert "| 75 |" in table and "**retry**" in table


def _sample_env(new_store, tmp_path) -> dict[str, str]:
    return {**os.environ, "DPLOGS": str(Path(sys.executable).with_name("dplogs")), "DPLOGS_SPEC": str(NIGHTLY),
            "DPLOGS_STORE": str(new_store(epsilon=30)), "DPLOGS_OUT": str(tmp_path / "reports"), "DPLOGS_TZ": "Europe/Berlin"}


def _cron_line() -> tuple[dict[str, str], str]:
    block = re.search(r"```crontab\n(.*?)```", (DOCS / "scheduling.md").read_text(), re.S).group(1)
    env = dict(line.split("=", 1) for line in block.splitlines() if re.match(r"^[A-Z_]+=", line))
    job = next(line for line in block.splitlines() if re.match(r"^[\d*]", line))
    return env, job.split(None, 5)[5]


def _systemd_command() -> tuple[dict[str, str], str]:
    service = _unit("dplogs-report.service")
    exec_start = service["Service"]["ExecStart"]
    assert exec_start.startswith("/bin/sh -c '") and exec_start.endswith("'")
    return _env(service), exec_start[len("/bin/sh -c '"):-1]


def _airflow_command() -> tuple[dict[str, str], str]:
    tree = ast.parse((DOCS / "airflow" / "dplogs_report.py").read_text())
    values = {t.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name) and t.id in ("BASH_COMMAND", "ENV")}
    return values["ENV"], values["BASH_COMMAND"]


@pytest.mark.parametrize("recipe", [_cron_line, _systemd_command, _airflow_command])
def test_recipe_command_runs_against_the_sample_store(recipe, new_store, tmp_path):
    """The documented command, as written, with only its environment pointed at a test store:
    a backfill anchor first (the sample logs are from 2024), then the scheduled line itself."""
    documented_env, command = recipe()
    env = _sample_env(new_store, tmp_path)
    assert set(documented_env) == {k for k in env if k.startswith("DPLOGS")}
    command = command.replace("/var/log/dplogs-report.log", str(tmp_path / "cron.log"))
    # release 2024-03-11 so that the scheduled catch-up has history to continue from
    first = subprocess.run(["sh", "-c", command.replace("--catch-up", "--catch-up --since 2024-03-11 --until 2024-03-12")],
                           env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr + (tmp_path / "cron.log").read_text() if (tmp_path / "cron.log").exists() else first.stderr
    out = Path(env["DPLOGS_OUT"])
    assert (out / "nightly-soc-2024-03-12.json").is_file() and os.readlink(out / "nightly-soc-latest.html") == "nightly-soc-2024-03-12.html"
    ledger = Ledger.open(Path(env["DPLOGS_STORE"]) / "ledger.sqlite")
    spent = ledger.spent("2024-03").epsilon
    # the same line again: nothing to do for those periods, nothing spent (here it would catch up
    # from 2024-03-13 to yesterday; bound it to the sample period so the test stays small)
    again = subprocess.run(["sh", "-c", command.replace("--catch-up", "--catch-up --until 2024-03-12")],
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert Ledger.open(Path(env["DPLOGS_STORE"]) / "ledger.sqlite").spent("2024-03").epsilon == spent
