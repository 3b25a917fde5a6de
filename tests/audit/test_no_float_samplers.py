"""No release path may draw randomness from numpy.random, random, scipy's .rvs or any other float
sampler: a static AST scan of dplogs/, and a runtime check that runs a full release and a training
run with those samplers booby-trapped."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import numpy as np
import pytest

# imported before any trap is set: scipy.stats (used by dplogs.audit) draws doc examples at import
from click.testing import CliRunner
from dplogs.audit.detector import canary_batches
from dplogs.audit.protocol import watch_draws
from dplogs.backends.base import get_backend
from dplogs.cli import cli
from dplogs.detect.kmeans import plan_kmeans, train_kmeans
from dplogs.detect.train import TrainRequest, train_from_store
from dplogs.engine.api import Engine
from dplogs.engine.plan import Aggregation
from dplogs.privacy import Clamp
from dplogs.privacy import ContributionBounds
from dplogs.privacy.ledger import Ledger
from tests.audit.audit_paths import CountPath, SumPath, dataset
from tests.audit.engine_data import WINDOW, neighbours

PACKAGE = Path(__file__).resolve().parents[2] / "dplogs"

# file (relative to dplogs/) -> why it may use `secrets` directly
SECRETS_ALLOWED = {
    "privacy/randomness.py": "the CSPRNG helpers everything else must use",
    "privacy/sampler.py": "the exact discrete sampler is driven by CSPRNG words",
    "ingest/store.py": "unique temporary/batch file names, not privacy randomness",
}
# file -> why it may import scipy.stats (calls of .rvs are refused everywhere)
SCIPY_STATS_ALLOWED = {"audit/stats.py": "beta.ppf for Clopper–Pearson bounds; draws nothing"}
OPENDP_OK = "privacy/"


def _violations(path: Path) -> list[str]:
    rel = path.relative_to(PACKAGE).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                if a.name in ("random", "numpy.random") or a.name.startswith("numpy.random."):
                    out.append(f"{where} imports {a.name}")
                if top == "secrets" and rel not in SECRETS_ALLOWED:
                    out.append(f"{where} imports secrets (use dplogs.privacy.randomness)")
                if top in ("opendp", "dp_accounting") and not rel.startswith(OPENDP_OK):
                    out.append(f"{where} imports {a.name} outside dplogs/privacy")
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            names = {a.name for a in node.names}
            if mod == "random" or mod.startswith("numpy.random") or (mod == "numpy" and "random" in names):
                out.append(f"{where} imports from {mod}")
            if mod == "secrets" and rel not in SECRETS_ALLOWED:
                out.append(f"{where} imports from secrets (use dplogs.privacy.randomness)")
            if mod.split(".")[0] in ("opendp", "dp_accounting") and not rel.startswith(OPENDP_OK):
                out.append(f"{where} imports from {mod} outside dplogs/privacy")
            if (mod.startswith("scipy.stats") or (mod == "scipy" and "stats" in names)) and rel not in SCIPY_STATS_ALLOWED:
                out.append(f"{where} imports scipy.stats (a dev dependency with float samplers)")
        elif isinstance(node, ast.Attribute):
            # np.random / numpy.random / torch.randn-style access, and any .rvs(...)
            if node.attr == "random" and isinstance(node.value, ast.Name) and node.value.id in ("np", "numpy"):
                out.append(f"{where} uses {node.value.id}.random")
            if node.attr == "rvs":
                out.append(f"{where} calls a scipy-style .rvs sampler")
            if node.attr in ("randn", "rand", "normal_", "uniform_") and isinstance(node.value, ast.Name) and node.value.id == "torch":
                out.append(f"{where} uses torch.{node.attr}")
        elif isinstance(node, ast.Name) and node.id == "random" and isinstance(node.ctx, ast.Load):
            out.append(f"{where} uses a name `random`")
    return out


def test_static_scan_finds_no_forbidden_sampler_in_dplogs():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    problems = [v for f in files for v in _violations(f)]
    assert not problems, "forbidden randomness on a release path:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "source,expect",
    [
        ("import numpy as np\nx = np.random.laplace(0, 1)\n", "uses np.random"),
        ("import random\n", "imports random"),
        ("from numpy.random import default_rng\n", "imports from numpy.random"),
        ("from scipy import stats\nstats.laplace.rvs(size=3)\n", "rvs"),
        ("import secrets\n", "imports secrets"),
        ("import opendp.prelude as dp\n", "outside dplogs/privacy"),
    ],
)
def test_static_scan_catches_each_forbidden_pattern(tmp_path, monkeypatch, source, expect):
    fake = PACKAGE / "engine" / "_scan_probe.py"  # path only; the source is parsed from memory
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: source)
    assert any(expect in v for v in _violations(fake))


class _Trap(Exception):
    pass


@pytest.fixture
def booby_trapped(monkeypatch):
    """Every function of numpy.random (default_rng, the legacy laplace/normal/rand..., seed) and of
    random raises. Classes stay (other libraries use them in type annotations); constructing one
    directly is what the static scan refuses."""

    def trap(*a, **k):
        raise _Trap("forbidden sampler used on a release path")

    for name in dir(np.random):
        obj = getattr(np.random, name)
        if not name.startswith("_") and callable(obj) and not isinstance(obj, type):
            monkeypatch.setattr(np.random, name, trap)
    for name in dir(random):
        obj = getattr(random, name)
        if not name.startswith("_") and callable(obj) and not isinstance(obj, type):
            monkeypatch.setattr(random, name, trap)
    yield


def test_the_trap_works(booby_trapped):
    with pytest.raises(_Trap):
        np.random.default_rng()
    with pytest.raises(_Trap):
        random.random()


def test_reference_release_path_runs_without_float_samplers(booby_trapped):

    d = dataset(victim_keys=["failure"], victim_rows=3)
    b = ContributionBounds(max_groups=1, max_rows_per_group=2)
    assert CountPath(b, epsilon=1.0)(d).shape == (3,)
    assert CountPath(b, mechanism="gaussian", rho=0.5)(d).shape == (3,)
    assert SumPath(b, Clamp(lo=0, hi=10), epsilon=1.0)(d).shape == (3,)


def test_engine_release_and_training_run_without_float_samplers_and_keep_the_protocol(booby_trapped, tmp_path):
    """A full engine release charged to a real ledger and a DP k-means training run, with
    numpy.random and random booby-trapped; every draw happens under a reserved ledger entry."""

    ledger = Ledger.open(tmp_path / "ledger.sqlite", create=True)
    ledger.set_caps(window_policy="month", epsilon=10.0, delta=1e-5, rho=5.0)
    d, _ = neighbours(victim_rows=3, host_share=3)
    eng = Engine(scan=lambda: d, privacy_unit="user.name", budget_window="month", ledger=ledger,
                 backend=get_backend("polars"))
    with watch_draws(ledger.path) as draws:
        rel = eng.build(Aggregation.count(), Aggregation.sum("source.bytes"), keys=["event.outcome"], epsilon=1.0,
                        max_groups=1, max_rows_per_group=2, clamp={"source.bytes": (0, 100)}, **WINDOW).release(caller="audit")
        eng.build(Aggregation.count(), keys=["host.name"], epsilon=1.0, delta=1e-6, max_groups=1,
                  max_rows_per_group=2, **WINDOW).release(caller="audit")
        plan = plan_kmeans(k=2, dim=8, iterations=2, rho=0.5, max_rows_per_unit=1, clip_norm=1.0)
        batches = canary_batches(np.ones(8, dtype=bool), clip_norm=1.0, background=20)
        with ledger.charge(plan.loss, windows=["2026-11"], caller="train", query="kmeans") as charge:
            train_kmeans(batches, plan=plan, charge=charge)
            charge.record({"model": "kmeans"})
    assert rel.data.height == 6
    assert len(draws) >= 4 and all(dr.ok for dr in draws), draws
    assert {e.status for e in ledger.history()} == {"committed"} and len(ledger.history()) == 3


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory) -> Path:
    """A store of sample_logs/auth.log with budget caps (ingest is not a release path: it runs
    before any trap is set)."""
    store = tmp_path_factory.mktemp("trap") / "store"
    repo = Path(__file__).resolve().parents[2]
    assert CliRunner().invoke(cli, ["ingest", "--store", str(store), "--year", "2024",
                                    str(repo / "sample_logs" / "auth.log")]).exit_code == 0
    assert CliRunner().invoke(cli, ["budget", "set", "--store", str(store), "--epsilon", "10", "--delta", "1e-5"]).exit_code == 0
    return store


@pytest.mark.parametrize("detector", ["kmeans", "autoencoder"])
def test_training_from_a_store_runs_without_float_samplers_and_keeps_the_protocol(sample_store, tmp_path, booby_trapped, detector):
    """The whole training path (store scan, bounded feature extraction, DP k-means or DP-SGD with
    Poisson subsampling, model file) with numpy.random and random booby-trapped."""
    req = TrainRequest(detector=detector, epsilon=1.0, delta=1e-6, start="2024-03-01", end="2024-04-01",
                       max_windows_per_unit=5, clip_norm=1.0, steps=20, sampling_rate=0.25)
    with watch_draws(sample_store / "ledger.sqlite") as draws:
        path, card = train_from_store(sample_store, req, output=tmp_path / "model.json")
    assert path.exists() and card.ledger_entry
    assert draws and all(d.ok for d in draws), draws
