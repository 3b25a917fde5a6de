"""Evaluate the DP detectors against their non-private twins AND simple non-private baselines on
labelled data.

Datasets (read from ../shared/datasets/labeled and ./sample_logs, never copied; see their READMEs):

- ``hdfs-loglizer``: HDFS_v1 block sessions, loglizer's train-ratio-0.5 "uniform" protocol
  emulated on the 1% normal sample: half the sampled normals plus half the anomalies thinned to
  the population rate (unlabelled, as loglizer's unsupervised models see them) for training, the
  rest for testing. F1 and AP count each test normal 100× (it stands for 100 population normals).
- ``hdfs-deeplog``: DeepLog's split: train on its 4,855 normal sessions from the first 100k log
  lines; test on all 16,838 anomalies and the loghub 1% normal sample (5,583, overlap with
  DeepLog's training blocks ≈ 1%), each test normal counted 553,368 / 5,583 ≈ 99× in F1 and AP.
- ``adfa-ld``: ADFA-LD, train on the official 833 normal training traces, test on the 4,372
  validation traces and 746 attacks; features: the set of syscalls of each trace
  (:func:`dplogs.detect.sessions.presence_vectors`, L2-normalised).
- ``sample-logs``: the shipped demo logs (``sample_logs/``) ingested into a temporary store, the
  store's own features (:func:`dplogs.detect.features.extract_features`) per user-day, unit
  ``user.name``; unsupervised, as ``dplogs train``/``score`` run: train on K = 5 random days per
  user (the baselines fit on the same rows), score every user-day. Positive: the
  planted exfiltration (``omar.haddad``, 2024-03-14 23:00 to 03-15 03:00: 2 user-days). Far too
  few positives for AUROC to mean much; the table also gives their ranks.
- ``otrf-purplesharp``: OTRF's PurpleSharp AD playbook I (53 s of Windows Security/Sysmon events
  from a domain), user 5-minute windows (K = 1; events without a user are each their own unit);
  positive when the window holds an event of the attack tool's process (``PurpleSharp.exe``),
  which covers the operator account and the six accounts it sprayed. Unsupervised: train and
  score the same unit-windows.

The session/trace is the privacy unit for the labelled sets (K = 1 row each). Features are
event-count vectors on HDFS (:func:`dplogs.detect.sessions.count_vectors`, public vocabulary and
cap), syscall presence vectors on ADFA-LD,
clipped to C = 1 (training and test rows). The store datasets add the peer features
(:mod:`dplogs.detect.peers`): each DP detector at ε gets a baseline released with PEER_SHARE of ε
and trains on the rest; twins and baselines use the exact baseline. Their training rows are
clipped to C = 1 and their test rows are scored unclipped, as ``dplogs score`` does, and every detector
(DP and twin) scores their directional features one-sided (:mod:`dplogs.detect.residuals`), as
``dplogs train`` records it; set TWO_SIDED_SCORING=1 to compare with two-sided scores.

Baselines (non-private, same rows and features as the detectors, fitted on the training rows):
``dist-to-mean`` (squared distance to the mean row after standardising each feature by the
training std), ``dist-to-mean-unscaled`` (the same on the features as the detectors see them,
already in [0, 1] by public constants), ``max-z`` (the largest per-feature |z|), ``raw-count`` (the raw event count of the
session, or failure count of the user-day on sample-logs: no model at all) and
``isolation-forest`` (scikit-learn, 100 trees; the ``bench`` extra).

Metrics: AUROC and average precision (AP, with the normal weights above), N positives and
negatives per test set. The F1 threshold is a quantile of the model's TRAINING scores (no test
labels): 1 − 0.5% − the public expected anomaly share of the training set (2.9% for
hdfs-loglizer, 0 otherwise). That threshold is computed in the clear: it is research, like the
whole script, which draws noise against in-memory ``Charge.for_audit`` charges rather than a
ledger (nothing here is released).

Run: ``python benchmarks/detector_eval.py [--seeds 3] [--epsilons 0.5,1,2,4,8] [--out docs/]``;
writes a JSON of all runs, a Markdown table and the AUROC-vs-ε plot (needs the ``bench`` extra:
``pip install -e .[bench]``).
"""

from __future__ import annotations

import os

# numpy's OpenBLAS threads spin-wait on a busy shared machine and turn the skinny matmuls of these
# loops into seconds of CPU; one thread per process is faster here and is what Spark executors run.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import csv
import datetime as dt
import gzip
import io
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu

from dplogs.detect.autoencoder import (
    AutoencoderConfig, init_params, train_autoencoder, train_autoencoder_nonprivate,
)
from dplogs.detect.features import clip_rows, feature_batches
from dplogs.detect.kmeans import init_centroids, plan_kmeans, train_kmeans, train_kmeans_nonprivate
from dplogs.detect.peers import PEER_FEATURE_NAMES, PEER_SHARE, PeerBaseline, plan_peers, release_peers, with_peer_features
from dplogs.detect.residuals import rising_mask
from dplogs.detect.sessions import count_vectors, presence_vectors
from dplogs.privacy import Charge
from dplogs.privacy.dpsgd import plan_dpsgd, rho_for_epsilon

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "../shared/datasets/labeled"
EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0)
DELTA = 1e-6
CLIP = 1.0
SCORE_CLIP = os.environ.get("CLIPPED_SCORING") is None  # store test rows unclipped (set it to compare)
TWO_SIDED = os.environ.get("TWO_SIDED_SCORING") is not None  # store datasets: no one-sided residuals (to compare)
THRESHOLD_QUANTILE = 0.995
HDFS_NORMALS, HDFS_ANOMALIES = 558_223, 16_838
SAMPLE_K = 5  # sample-logs: training user-days kept per user per month (--max-windows)
MIN_POSITIVES = 30  # below this many positives (or negatives) the table flags AUROC/AP as anecdotal
DETECTORS = ("kmeans", "autoencoder")
BASELINES = ("dist-to-mean", "dist-to-mean-unscaled", "max-z", "raw-count", "isolation-forest")


@dataclass
class Split:
    name: str
    vocab: int
    train: np.ndarray
    test: np.ndarray
    labels: np.ndarray  # 1 = anomaly
    normal_weight: float  # each test normal stands for this many population normals (F1, AP)
    raw_count: np.ndarray  # per test row: the raw-count baseline's score
    contamination: float = 0.0  # public expected anomaly share of the (unlabelled) training set
    ae_steps: int = 100
    ae_sampling_rate: float = 0.2
    test_ids: list[str] | None = None  # names of the test rows (sample-logs: user/day), for ranks
    unclipped_scoring: bool = False  # test rows scored as they are (store datasets, as `dplogs score`)
    rising: np.ndarray | None = None  # directional features, scored one-sided (store datasets, as `dplogs train`)

    def __post_init__(self) -> None:
        # training rows are clipped to C (the DP loops' sensitivity). Test rows of the session
        # datasets too: nearly all of them lie outside the clip ball, and a model of clipped rows
        # scores unclipped ones by their length (ADFA-LD fell to AUROC 0.59). The store datasets
        # score unclipped rows, as `dplogs score` does (see store_split)
        self.train = clip_rows(self.train, CLIP)
        if not self.unclipped_scoring:
            self.test = clip_rows(self.test, CLIP)


def _hdfs(path: Path) -> list[list[int]]:
    with gzip.open(path, "rt") as f:
        return [[int(t) for t in line.strip().split(",")[-1].split()] for line in f if line.strip()]


def _features(seqs, vocab: int, cap: float) -> np.ndarray:
    return count_vectors(seqs, vocab_size=vocab, cap=cap)


def _lengths(seqs) -> np.ndarray:
    return np.array([len(s) for s in seqs], dtype=np.float64)


def load_splits(seed: int, names: set[str]) -> list[Split]:
    # the split is research bookkeeping, not a release: a seeded numpy generator is fine here
    rng = np.random.default_rng(seed)
    splits = []
    d = DATA / "hdfs_full_sampled"
    if names & {"hdfs-loglizer", "hdfs-deeplog"}:
        normal_s, anomal_s = _hdfs(d / "loghub_hdfs_train.gz"), _hdfs(d / "loghub_hdfs_test_abnormal.gz")
        normal, anomal = _features(normal_s, 34, 300), _features(anomal_s, 34, 300)
        n_len, a_len = _lengths(normal_s), _lengths(anomal_s)
        pn, pa = rng.permutation(len(normal)), rng.permutation(len(anomal))
        n_half, a_half = len(normal) // 2, len(anomal) // 2
        contam = round(n_half * HDFS_ANOMALIES / HDFS_NORMALS)  # anomalies at the population rate
        if "hdfs-loglizer" in names:
            train = np.vstack([normal[pn[:n_half]], anomal[pa[:contam]]])
            test_n, test_a = normal[pn[n_half:]], anomal[pa[a_half:]]
            splits.append(Split("hdfs-loglizer", 34, train, np.vstack([test_n, test_a]),
                                np.r_[np.zeros(len(test_n)), np.ones(len(test_a))], HDFS_NORMALS / len(normal),
                                np.r_[n_len[pn[n_half:]], a_len[pa[a_half:]]], contamination=contam / len(train)))
        if "hdfs-deeplog" in names:
            dl_train = _features(_hdfs(d / "deeplog_hdfs_train.gz"), 34, 300)
            dl_anom_s = _hdfs(d / "deeplog_hdfs_test_abnormal.gz")
            dl_anom = _features(dl_anom_s, 34, 300)
            splits.append(Split("hdfs-deeplog", 34, dl_train, np.vstack([normal, dl_anom]),
                                np.r_[np.zeros(len(normal)), np.ones(len(dl_anom))],
                                (HDFS_NORMALS - len(dl_train)) / len(normal), np.r_[n_len, _lengths(dl_anom_s)]))
    if "adfa-ld" in names:
        with gzip.open(DATA / "adfa_ld" / "adfa_ld_traces.csv.gz", "rt") as f:
            rows = list(csv.DictReader(io.StringIO(f.read())))
        seqs = [[int(s) for s in r["syscalls"].split()] for r in rows]
        # the SET of syscalls a trace makes (L2-normalised), not log-counts: attacks lack common
        # syscalls more than they add rare ones (AUROC of the DP autoencoder at ε = 1: ≈ 0.83
        # vs 0.814 on counts; docs/detector.md, Known limits)
        x = presence_vectors(seqs, vocab_size=350)
        split = np.array([r["official_split"] for r in rows])
        label = np.array([int(r["label"]) for r in rows])
        test = split != "training"
        # 350 inputs make the exact per-parameter noise ~10x costlier than HDFS: fewer, larger steps
        splits.append(Split("adfa-ld", 350, x[split == "training"], x[test], label[test], 1.0,
                            _lengths(seqs)[test], ae_steps=40, ae_sampling_rate=0.5))
    if "sample-logs" in names:
        splits.append(sample_logs_split())
    if "otrf-purplesharp" in names:
        splits.append(otrf_split())
    return splits


_STORE_CACHE: dict[str, Split] = {}
OTRF = ROOT / "../shared/datasets/otrf_security_datasets/windows_host/purplesharp_ad_playbook_I_2020-10-22042947.json.gz"


def store_split(name: str, inputs: list[str], ingest_args: list[str], *, window: str, k: int, positive,
                ae_steps: int = 100) -> Split:
    """Unit-windows of logs ingested into a temporary store, with the store's own features (unit
    ``user.name``), trained as ``dplogs train`` does (K random windows per unit per month) and scored
    on every unit-window. ``positive`` is an event-level polars expression: a unit-window is positive
    when any of its events is. The raw-count baseline is the unit-window's failure count. The same
    rows for every seed (only model noise differs)."""
    if name in _STORE_CACHE:
        return _STORE_CACHE[name]
    import polars as pl

    from dplogs.detect.features import FEATURE_NAMES, WINDOWS, FeatureSpec, extract_features, unit_keys
    from dplogs.ingest.store import Store
    from dplogs.schema.units import PER_ROW, UnitRule

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-c", "from dplogs.cli import main; main()", "ingest", *inputs, "--store",
                        f"{tmp}/s", *ingest_args], check=True, capture_output=True)
        store = Store.open(f"{tmp}/s")
        spec = dict(clip_norm=CLIP, window=window, budget_window="month")
        score_spec = dict(spec, clip_norm=math.sqrt(len(FEATURE_NAMES) + len(PEER_FEATURE_NAMES)) if SCORE_CLIP else CLIP)
        # each user-less event its own unit (the `per-row` opt-in): the protocol of the earlier
        # tables, and the only one under which the tool's user-less events are rows of their own
        rule = UnitRule.parse("user.name", unattributed=PER_ROW)
        table = extract_features(store.scan(), unit=rule, seed=0,
                                 spec=FeatureSpec(max_windows_per_unit=2**31, **score_spec))
        train = extract_features(store.scan(), unit=rule, seed=1, spec=FeatureSpec(max_windows_per_unit=k, **spec))
        ts = pl.col("@timestamp")
        # the same unit key as extract_features (a null unit: each event its own unit)
        truth = (store.scan().filter(ts.is_not_null()).with_columns(unit_keys(rule).alias("unit"))
                 .with_columns(ts.dt.truncate(WINDOWS[window]).alias("window_start"))
                 .group_by("unit", "window_start")
                 .agg((pl.col("event.outcome") == "failure").sum().alias("failures"),
                      positive.fill_null(False).any().alias("positive"))
                 .collect())
    frame = table.frame.join(truth, on=["unit", "window_start"], how="left", maintain_order="left")
    if frame["positive"].null_count():
        raise SystemExit(f"{name}: labels do not line up with the feature rows")
    labels = frame["positive"].cast(pl.Float64).to_numpy()
    ids = [f"{u['value'] if u['field'] == 0 else '(no user)'}/{w:%Y-%m-%d %H:%M}"
           for u, w in zip(frame["unit"], frame["window_start"])]
    peers = _peer_baseline(train, k, None)  # twins and baselines: the exact (non-private) baseline
    x_train, x_test = with_peer_features(train, peers).matrix(), with_peer_features(table, peers).matrix()
    split = Split(name, x_train.shape[1], x_train, x_test, labels, 1.0,
                  frame["failures"].cast(pl.Float64).to_numpy(), ae_steps=ae_steps, ae_sampling_rate=0.5,
                  test_ids=ids if labels.sum() <= 10 else None, unclipped_scoring=SCORE_CLIP,
                  rising=None if TWO_SIDED else rising_mask((*FEATURE_NAMES, *PEER_FEATURE_NAMES)))
    split.unit_ids = train.frame["unit_id"].to_numpy()  # type: ignore[attr-defined]
    split.k = k  # type: ignore[attr-defined]
    split.tables = (train, table)  # type: ignore[attr-defined]
    _STORE_CACHE[name] = split
    return split


def sample_logs_split() -> Split:
    """User-days of the shipped demo logs; positives: the planted exfiltration (omar.haddad's
    downloads 2024-03-14 23:00 to 03-15 03:00, i.e. two user-days)."""
    import polars as pl

    ts = pl.col("@timestamp")
    exfil = ((pl.col("user.name") == "omar.haddad") & (ts >= dt.datetime(2024, 3, 14, 23, tzinfo=dt.UTC))
             & (ts < dt.datetime(2024, 3, 15, 3, tzinfo=dt.UTC)) & pl.col("event.category").list.contains("web"))
    return store_split("sample-logs", [str(ROOT / "sample_logs")], ["--year", "2024"], window="day", k=SAMPLE_K,
                       positive=exfil)


def otrf_split() -> Split:
    """OTRF's PurpleSharp AD playbook I (a 53-second Windows recording): user 5-minute windows
    (events without a user are each their own unit, as in the store); positive when a window holds
    an event of the attack tool's process (PurpleSharp.exe: its own activity, and the six accounts
    it sprayed)."""
    import polars as pl

    tool = pl.col("process.executable").str.contains("(?i)purplesharp")
    return store_split("otrf-purplesharp", [str(OTRF)], [], window="5min", k=1, positive=tool, ae_steps=40)


def _peer_baseline(train, k: int, eps: float | None, detector: str = "kmeans"):
    """The peer baseline of the bounded training rows, released as `dplogs train` does with
    PEER_SHARE of ε (``eps`` None: exact, for the twins and baselines)."""
    from dplogs.privacy.testing import exact_mode

    if eps is None:  # exact counts need no minimum: every group with a row has its own mean
        plan = plan_peers(max_rows_per_unit=k, rho=1.0)
        with exact_mode():
            exact = release_peers(train.frame, plan=plan, charge=Charge.for_audit(plan.loss))
        return PeerBaseline(counts=exact.counts, sums=exact.sums, min_count=1.0, processes=exact.processes)
    if detector == "kmeans":
        plan = plan_peers(max_rows_per_unit=k, rho=rho_for_epsilon(eps, DELTA) * PEER_SHARE)
    else:
        plan = plan_peers(max_rows_per_unit=k, epsilon=eps * PEER_SHARE)
    return release_peers(train.frame, plan=plan, charge=Charge.for_audit(plan.loss))


def _at(s: Split, eps: float | None, detector: str) -> tuple[Split, float]:
    """The split a DP detector at ``eps`` sees and the share of ε left for training: on the store
    datasets, the peer features against a DP baseline released with PEER_SHARE of ε (the rest
    trains, as in `dplogs train`); the session datasets have no peer features."""
    tables = getattr(s, "tables", None)
    if tables is None or eps is None:
        return s, 1.0
    train, table = tables
    peers = _peer_baseline(train, s.k, eps, detector)  # type: ignore[attr-defined]
    out = Split(**{f: getattr(s, f) for f in s.__dataclass_fields__})
    out.train, out.test = with_peer_features(train, peers).matrix(), with_peer_features(table, peers).matrix()
    out.unit_ids, out.k = s.unit_ids, s.k  # type: ignore[attr-defined]
    return out, 1.0 - PEER_SHARE


def _unit_ids(s: Split) -> tuple[np.ndarray, int]:
    """Unit ids of the training rows and the bound K (1 per session; SAMPLE_K user-days per month)."""
    ids = getattr(s, "unit_ids", None)
    return (np.arange(len(s.train)), 1) if ids is None else (ids, s.k)  # type: ignore[attr-defined]


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float(mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


def average_precision(scores: np.ndarray, labels: np.ndarray, normal_weight: float) -> float:
    from sklearn.metrics import average_precision_score

    weights = np.where(labels == 1, 1.0, normal_weight)
    return float(average_precision_score(labels, scores, sample_weight=weights))


def f1(scores: np.ndarray, labels: np.ndarray, threshold: float, normal_weight: float) -> dict[str, float]:
    flag = scores > threshold
    tp = float((flag & (labels == 1)).sum())
    fp = float((flag & (labels == 0)).sum()) * normal_weight
    fn = float((~flag & (labels == 1)).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


class _Scorer:
    """A fitted baseline: ``scores(x)`` like a detector model."""

    def __init__(self, fn):
        self.scores = fn


def baselines(s: Split, seed: int):
    """(name, scorer) of the simple non-private baselines, fitted on the training rows."""
    from sklearn.ensemble import IsolationForest

    mu, sd = s.train.mean(axis=0), s.train.std(axis=0)
    # a feature constant in training: any deviation counts as one (large) unit, not 1/0
    sd = np.where(sd > 1e-9, sd, 1.0)
    yield "dist-to-mean", _Scorer(lambda x: (((x - mu) / sd) ** 2).sum(axis=1))
    # the features are already in [0, 1] by public constants; without the training std, features
    # that barely vary in training cannot dominate (standardising them made ADFA-LD chance level)
    yield "dist-to-mean-unscaled", _Scorer(lambda x: ((x - mu) ** 2).sum(axis=1))
    yield "max-z", _Scorer(lambda x: np.abs((x - mu) / sd).max(axis=1))
    raw = {id(s.test): s.raw_count}
    yield "raw-count", _Scorer(lambda x: raw.get(id(x), np.zeros(len(x))))
    forest = IsolationForest(n_estimators=100, random_state=seed).fit(s.train)
    yield "isolation-forest", _Scorer(lambda x: -forest.score_samples(x))


def kmeans_pair(s: Split, k: int = 8, iterations: int = 5):
    init = init_centroids(k, s.vocab, CLIP)
    ids, bound = _unit_ids(s)
    batches = feature_batches(s.train, ids)
    yield None, s, replace(train_kmeans_nonprivate(batches, init=init, iterations=iterations, clip_norm=CLIP), rising=s.rising)
    for eps in EPSILONS:
        s_eps, share = _at(s, eps, "kmeans")
        plan = plan_kmeans(k=k, dim=s.vocab, iterations=iterations, rho=rho_for_epsilon(eps, DELTA) * share,
                           max_rows_per_unit=bound, clip_norm=CLIP)
        model = train_kmeans(feature_batches(s_eps.train, ids), plan=plan, charge=Charge.for_audit(plan.loss), init=init)
        yield eps, s_eps, replace(model, rising=s.rising)


def autoencoder_pair(s: Split, grad_clip: float = 0.02):
    steps, q = s.ae_steps, s.ae_sampling_rate
    init = init_params(dim=s.vocab, hidden=8)
    ids, bound = _unit_ids(s)
    batches = feature_batches(s.train, ids)
    n_units = len(np.unique(ids))
    # research: the public normaliser is set from the known training size
    config = AutoencoderConfig(hidden=8, steps=steps, sampling_rate=q, expected_batch_size=q * n_units)
    yield None, s, replace(train_autoencoder_nonprivate(batches, dim=s.vocab, config=config, init=init), rising=s.rising)
    for eps in EPSILONS:
        s_eps, share = _at(s, eps, "autoencoder")
        plan = plan_dpsgd(epsilon=eps * share, delta=DELTA, sampling_rate=q, steps=steps, clip_norm=grad_clip)
        model = train_autoencoder(feature_batches(s_eps.train, ids), dim=s.vocab, config=config, plan=plan,
                                  max_rows_per_unit=bound, charge=Charge.for_audit(plan.loss), init=init)
        yield eps, s_eps, replace(model, rising=s.rising)


def _row(s: Split, detector: str, eps, seed: int, model) -> dict:
    train_scores, test_scores = model.scores(s.train), model.scores(s.test)
    thr = float(np.quantile(train_scores, THRESHOLD_QUANTILE - s.contamination))
    row = {"dataset": s.name, "detector": detector, "epsilon": eps, "seed": seed,
           "auroc": auroc(test_scores, s.labels), "ap": average_precision(test_scores, s.labels, s.normal_weight),
           "positives": int(s.labels.sum()), "negatives": int((s.labels == 0).sum()),
           **f1(test_scores, s.labels, thr, s.normal_weight)}
    if s.test_ids is not None:  # ranks (1 = most anomalous, ties pessimistic) of each positive
        order = np.argsort(-test_scores, kind="stable")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(1, len(order) + 1)
        ties = {i: int((test_scores >= test_scores[i]).sum()) for i in np.flatnonzero(s.labels == 1)}
        row["positive_ranks"] = {s.test_ids[i]: ties[i] for i in ties}
        row["rows"] = len(test_scores)
    return row


def run(seeds: int, partial: Path, names: set[str], only_baselines: bool = False, first_seed: int = 0) -> list[dict]:
    """All runs; each finished (dataset, detector, seed) is appended to ``partial`` as JSON lines."""
    results = []

    def keep(row: dict) -> None:
        results.append(row)
        with partial.open("a") as f:
            f.write(json.dumps(row) + "\n")

    for seed in range(first_seed, first_seed + seeds):
        for s in load_splits(seed, names):
            t0 = time.perf_counter()
            for name, model in baselines(s, seed):
                keep(_row(s, name, None, seed, model))
            print(f"seed {seed} {s.name} baselines: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            for detector, pairs in () if only_baselines else (("kmeans", kmeans_pair), ("autoencoder", autoencoder_pair)):
                t0 = time.perf_counter()
                for eps, s_eps, model in pairs(s):
                    keep(_row(s_eps, detector, eps, seed, model))
                print(f"seed {seed} {s.name} {detector}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return results


def summarise(results: list[dict]) -> list[dict]:
    keys = sorted({(r["dataset"], r["detector"], -1 if r["epsilon"] is None else r["epsilon"]) for r in results})
    out = []
    for ds, det, eps in keys:
        rs = [r for r in results if r["dataset"] == ds and r["detector"] == det
              and (r["epsilon"] is None if eps == -1 else r["epsilon"] == eps)]
        row = {"dataset": ds, "detector": det, "epsilon": None if eps == -1 else eps,
               **{f"{m}_mean": float(np.mean([r[m] for r in rs])) for m in ("auroc", "ap", "f1", "precision", "recall")},
               "auroc_std": float(np.std([r["auroc"] for r in rs])), "runs": len(rs),
               "positives": rs[0]["positives"], "negatives": rs[0]["negatives"]}
        if "positive_ranks" in rs[0]:
            row["positive_ranks"] = {k: [r["positive_ranks"][k] for r in rs] for k in rs[0]["positive_ranks"]}
            row["rows"] = rs[0]["rows"]
        out.append(row)
    return out


def _order(r: dict) -> tuple:
    kind = BASELINES.index(r["detector"]) if r["detector"] in BASELINES else -1
    return r["dataset"], kind < 0, kind, r["detector"], -1 if r["epsilon"] is None else r["epsilon"]


def markdown(summary: list[dict]) -> str:
    lines = ["| dataset | N pos / neg | method | ε | AUROC (mean ± sd) | AP | F1 | AUROC / twin | vs best baseline |",
             "|---|---|---|---|---|---|---|---|---|"]
    twin = {(r["dataset"], r["detector"]): r["auroc_mean"] for r in summary
            if r["epsilon"] is None and r["detector"] in DETECTORS}
    best = {}
    for r in summary:
        if r["detector"] in BASELINES:
            best[r["dataset"]] = max(best.get(r["dataset"], 0.0), r["auroc_mean"])
    for r in sorted(summary, key=_order):
        baseline = r["detector"] in BASELINES
        eps = "—" if baseline else "non-private" if r["epsilon"] is None else f"{r['epsilon']:g}"
        method = f"baseline: {r['detector']}" if baseline else r["detector"]
        n = f"{r['positives']} / {r['negatives']}"
        if min(r["positives"], r["negatives"]) < MIN_POSITIVES:
            n += " (too few to mean much)"
        ratio = "" if baseline else f"{r['auroc_mean'] / twin[(r['dataset'], r['detector'])]:.3f}"
        lines.append(f"| {r['dataset']} | {n} | {method} | {eps} | {r['auroc_mean']:.3f} ± {r['auroc_std']:.3f} | "
                     f"{r['ap_mean']:.3f} | {r['f1_mean']:.3f} | {ratio} | {r['auroc_mean'] - best[r['dataset']]:+.3f} |")
    ranks = [r for r in sorted(summary, key=_order) if "positive_ranks" in r]
    if ranks:
        lines += ["", "| dataset | method | ε | rank of each positive over seeds (of N rows) |", "|---|---|---|---|"]
        for r in ranks:
            eps = "—" if r["detector"] in BASELINES else "non-private" if r["epsilon"] is None else f"{r['epsilon']:g}"
            txt = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in r["positive_ranks"].items())
            lines.append(f"| {r['dataset']} | {r['detector']} | {eps} | {txt} (of {r['rows']}) |")
    return "\n".join(lines) + "\n"


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in summary})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.8), sharey=True)
    for ax, ds in zip(np.atleast_1d(axes), datasets):
        for det, colour in (("kmeans", "tab:blue"), ("autoencoder", "tab:red")):
            rs = sorted((r for r in summary if r["dataset"] == ds and r["detector"] == det and r["epsilon"] is not None),
                        key=lambda r: r["epsilon"])
            if not rs:
                continue
            ax.errorbar([r["epsilon"] for r in rs], [r["auroc_mean"] for r in rs], yerr=[r["auroc_std"] for r in rs],
                        marker="o", color=colour, label=f"DP {det}", capsize=3)
            (np_row,) = [r for r in summary if r["dataset"] == ds and r["detector"] == det and r["epsilon"] is None]
            ax.axhline(np_row["auroc_mean"], color=colour, linestyle="--", label=f"{det} (non-private)")
        bs = [r for r in summary if r["dataset"] == ds and r["detector"] in BASELINES]
        top = max(bs, key=lambda r: r["auroc_mean"])
        ax.axhline(top["auroc_mean"], color="black", linestyle=":", label="best simple baseline")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("ε (δ = 1e-6, per unit)")
        ax.set_title(f"{ds} (best baseline: {top['detector']})", fontsize=8)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("test AUROC")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    global EPSILONS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epsilons", default=",".join(f"{e:g}" for e in EPSILONS))
    ap.add_argument("--datasets", default="hdfs-loglizer,hdfs-deeplog,adfa-ld,sample-logs,otrf-purplesharp")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--first-seed", type=int, default=0, help="Seeds first-seed .. first-seed+seeds-1.")
    ap.add_argument("--only-baselines", action="store_true", help="Run the (cheap) baselines only.")
    ap.add_argument("--from-runs", type=Path, default=None,
                    help="Rebuild the JSON, table and plot from a detector_eval_runs.jsonl of an earlier run.")
    args = ap.parse_args()
    EPSILONS = tuple(float(e) for e in args.epsilons.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    if args.from_runs is not None:
        results = [json.loads(line) for line in args.from_runs.read_text().splitlines() if line.strip()]
    else:
        if not DATA.is_dir():
            sys.exit(f"labelled datasets not found at {DATA}")
        partial = args.out / "detector_eval_runs.jsonl"
        partial.unlink(missing_ok=True)
        results = run(args.seeds, partial, set(args.datasets.split(",")), args.only_baselines,
                      args.first_seed)
    summary = summarise(results)
    (args.out / "detector_eval.json").write_text(json.dumps({"runs": results, "summary": summary}, indent=1) + "\n")
    table = markdown(summary)
    (args.out / "detector_eval_table.md").write_text(table)
    print(table)
    plot(summary, args.out / "detector_auroc.png")


if __name__ == "__main__":
    main()
