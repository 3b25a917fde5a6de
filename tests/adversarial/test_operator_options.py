"""Options of the operator commands (inspect, timeseries) at their edges: a clear refusal with a
documented exit code (2 bad command line, 64 bad option), never an internal error (70), and
nothing charged."""

from __future__ import annotations

import pytest

from tests.adversarial.conftest import invoke, ledger_state


@pytest.mark.parametrize("mode", [[], ["--quarantine"]])
@pytest.mark.parametrize("n", ["9223372036854775807", "99999999999999999999"])
def test_inspect_head_beyond_what_can_be_shown_is_a_command_line_error(store, mode, n):
    res = invoke("inspect", "--store", store, "--head", n, *mode)
    assert res.exit_code == 2, res.output  # was an OverflowError reported as a bug (70)
    assert "--head" in res.output


@pytest.mark.parametrize("columns", [",,", " ", " , "])
def test_inspect_columns_without_a_name_says_so(store, columns):
    res = invoke("inspect", "--store", store, "--head", "1", "--columns", columns)
    assert res.exit_code == 64, res.output
    assert "--columns takes column names" in res.output  # was "not store columns: " naming nothing


def test_inspect_columns_ignores_empty_names_between_commas(store):
    res = invoke("inspect", "--store", store, "--head", "1", "--columns", "@timestamp,,host.name,", "--format", "json")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("z", ["nan", "inf", "-inf"])
def test_timeseries_z_threshold_must_be_finite(store, z):
    before = ledger_state(store)
    res = invoke("timeseries", "--store", store, "--sql", "SELECT COUNT(*) FROM logs", "--bucket", "day",
                 "--epsilon", "0.1", "--max-rows-per-group", "1", "--start", "2024-03-01", "--end", "2024-04-01",
                 "--z", z)
    assert res.exit_code == 64, res.output  # nan was released and charged, flagging nothing
    assert "--z must be a finite number" in res.output
    assert ledger_state(store) == before


def test_training_on_a_range_without_ingested_data_is_refused_before_the_charge(store, tmp_path):
    # it trained on pure noise and charged the 2025-03 window (queries refuse such a window)
    before = ledger_state(store)
    res = invoke("train", "--store", store, "--detector", "kmeans", "--epsilon", "1", "--delta", "1e-6",
                 "--start", "2025-03-01", "--end", "2025-04-01", "--output", tmp_path / "m.json")
    assert res.exit_code == 64, res.output
    assert "holds no ingested data" in res.output and "nothing was charged" in res.output
    assert ledger_state(store) == before
    assert not (tmp_path / "m.json").exists()


def test_inspect_table_of_a_huge_line_is_bounded(tmp_path):
    # a 10 MB line made `dplogs inspect --head 5` run 9 minutes in 2.3 GB (rich folded all of it);
    # the table now cuts long cells and says so, JSON keeps everything
    import time

    line = "Mar 12 10:00:00 web1 sshd[1]: Failed password for root from 10.0.0.9 port 22 ssh2 "
    log = tmp_path / "auth.log"
    log.write_text(line + "A" * 1_000_000 + "\n" + "junk " + "B" * 1_000_000 + "\n")
    assert invoke("ingest", "--store", tmp_path / "s", "--year", "2024", log).exit_code == 0
    for mode in (["--head", "1"], ["--quarantine"]):
        started = time.monotonic()
        res = invoke("inspect", "--store", tmp_path / "s", *mode)
        assert res.exit_code == 0, res.output[-300:]
        assert time.monotonic() - started < 20
        assert len(res.output) < 100_000
        flat = "".join(ch for ch in res.output if not ch.isspace() and ch != "│")  # the table folds the cell
        assert "morecharacters;--formatjsonshowsall" in flat
    res = invoke("inspect", "--store", tmp_path / "s", "--quarantine", "--format", "json")
    assert "B" * 1_000_000 in res.output


@pytest.mark.parametrize("target", ["ledger.sqlite", "ledger.sqlite-wal", "manifest.json", "events/day=2024-03-12/x.parquet"])
def test_output_over_the_stores_own_files_is_refused_before_the_charge(store, tmp_path, target):
    # `-o STORE/ledger.sqlite` overwrote the ledger with the CSV (its recorded spend erased, the
    # store unusable); a Parquet file under STORE/events would be read back as events
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    before = ledger_state(copy)
    ledger_bytes = (copy / "ledger.sqlite").read_bytes()
    fmt = "parquet" if target.endswith(".parquet") else "csv"
    (copy / target).parent.mkdir(parents=True, exist_ok=True)
    res = invoke("query", "--store", copy, "--sql", "SELECT COUNT(*) FROM logs", "--epsilon", "0.1",
                 "--max-rows-per-group", "1", "--day", "2024-03-12", "--format", fmt, "--output", copy / target)
    assert res.exit_code == 64, res.output
    assert "would overwrite the store's own data" in res.output
    assert ledger_state(copy) == before and (copy / "ledger.sqlite").read_bytes() == ledger_bytes
    spec = tmp_path / "spec.toml"
    from tests.adversarial.conftest import REPO

    spec.write_text(f'name = "r"\n[[section]]\nquery = "{REPO / "queries" / "failed_logins_per_hour.toml"}"\n')
    res = invoke("report", spec, "--store", copy, "--date", "2024-03-12", "--output", copy / "ledger.sqlite")
    assert res.exit_code == 64, res.output
    assert ledger_state(copy) == before and (copy / "ledger.sqlite").read_bytes() == ledger_bytes


def test_model_and_scores_cannot_overwrite_the_store(store, tmp_path):
    # train -o STORE/ledger.sqlite replaced the ledger by the model after charging; score -o
    # STORE/manifest.json replaced the manifest by Parquet (the store no longer opened)
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    before = ledger_state(copy)
    res = invoke("train", "--store", copy, "--detector", "kmeans", "--epsilon", "1", "--delta", "1e-6",
                 "--start", "2024-03-01", "--end", "2024-04-01", "--output", copy / "ledger.sqlite")
    assert res.exit_code == 64, res.output
    assert ledger_state(copy) == before
    model = tmp_path / "m.json"
    res = invoke("train", "--store", copy, "--detector", "kmeans", "--epsilon", "1", "--delta", "1e-6",
                 "--start", "2024-03-01", "--end", "2024-04-01", "--output", model)
    assert res.exit_code == 0, res.output
    manifest = (copy / "manifest.json").read_bytes()
    res = invoke("score", "--store", copy, "--model", model, "--output", copy / "manifest.json")
    assert res.exit_code == 64, res.output
    assert (copy / "manifest.json").read_bytes() == manifest
    res = invoke("score", "--store", copy, "--model", model)  # the default, STORE/scores/, stays allowed
    assert res.exit_code == 0, res.output


def test_catch_up_over_centuries_is_refused_before_anything_is_written(store, tmp_path):
    # `--catch-up --since 1000-01-01` set out to write report files for 372,000 nights
    import time

    from tests.adversarial.conftest import REPO

    before = ledger_state(store)
    started = time.monotonic()
    res = invoke("report", REPO / "queries" / "reports" / "nightly.toml", "--store", store, "--catch-up",
                 "--since", "1000-01-01", "--out-dir", tmp_path / "out")
    assert res.exit_code == 64, res.output[-500:]
    assert "more than the limit of 1,000" in res.output
    assert time.monotonic() - started < 20
    assert ledger_state(store) == before
    assert not any((tmp_path / "out").glob("nightly-*"))


def test_a_store_without_any_events_refuses_releases_before_the_charge(tmp_path):
    # a first ingest of a folder whose files it recognised none of leaves a store with no events
    # and no input records; its coverage read "unknown", so queries were charged for pure noise
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "junk.bin").write_bytes(bytes(range(256)) * 4)
    store = tmp_path / "s"
    assert invoke("ingest", "--store", store, tmp_path / "in").exit_code == 0
    assert (store / "manifest.json").is_file()
    assert invoke("budget", "set", "--store", store, "--epsilon", "10", "--delta", "1e-6").exit_code == 0
    before = ledger_state(store)
    res = invoke("query", "--store", store, "--sql", "SELECT COUNT(*) FROM logs", "--epsilon", "1",
                 "--max-rows-per-group", "1", "--start", "2024-03-01", "--end", "2024-04-01")
    assert res.exit_code == 64, res.output
    assert "holds no ingested data" in res.output and "nothing yet" in res.output
    assert ledger_state(store) == before


def test_training_without_a_range_uses_the_latest_covered_budget_window(store, tmp_path):
    before = ledger_state(store)
    res = invoke("train", "--store", store, "--detector", "kmeans", "--epsilon", "1", "--delta", "1e-6",
                 "--start", "2024-03-01", "--output", tmp_path / "half.json")
    assert res.exit_code == 64 and "give both --start and --end, or neither" in res.output
    assert ledger_state(store) == before
    res = invoke("train", "--store", store, "--detector", "kmeans", "--epsilon", "1", "--delta", "1e-6",
                 "--output", tmp_path / "m.json")
    assert res.exit_code == 0, res.output
    assert "training window defaults to 2024-03-01 to 2024-04-01" in res.stderr
    (entry, *_) = ledger_state(store)
    assert entry["caller"] == "train" and entry["windows"] == ["2024-03"]
