"""Evaluate the DP detectors against their non-private twins on labelled public data.

Datasets (read from ../shared/datasets/labeled, never copied; see its README):

- ``hdfs-loglizer``: HDFS_v1 block sessions, loglizer's train-ratio-0.5 "uniform" protocol
  emulated on the 1% normal sample: half the sampled normals plus half the anomalies thinned to
  the population rate (unlabelled, as loglizer's unsupervised models see them) for training, the
  rest for testing. F1 counts each test normal 100× (it stands for 100 population normals).
- ``hdfs-deeplog``: DeepLog's split: train on its 4,855 normal sessions from the first 100k log
  lines; test on all 16,838 anomalies and the loghub 1% normal sample (5,583, overlap with
  DeepLog's training blocks ≈ 1%), each test normal counted 553,368 / 5,583 ≈ 99× in F1.
- ``adfa-ld``: ADFA-LD, train on the official 833 normal training traces, test on the 4,372
  validation traces and 746 attacks.

The session/trace is the privacy unit (K = 1 row each). Features are event-count vectors
(:func:`dplogs.detect.sessions.count_vectors`, public vocabulary and cap), clipped to C = 1.
The decision threshold is a quantile of the model's TRAINING scores (no test labels): 1 − 0.5% −
the public expected anomaly share of the training set (2.9% for hdfs-loglizer, 0 otherwise).
That threshold is computed in the clear: it is research, like the whole script, which draws noise
against in-memory ``Charge.for_audit`` charges rather than a ledger (nothing here is released).

Run: ``python benchmarks/detector_eval.py [--seeds 3] [--out docs/]``; writes a JSON of all runs,
a Markdown table and the AUROC-vs-ε plot (needs matplotlib: ``pip install -e .[bench]``).
"""

from __future__ import annotations

import os

# numpy's OpenBLAS threads spin-wait on a busy shared machine and turn the skinny matmuls of these
# loops into seconds of CPU; one thread per process is faster here and is what Spark executors run.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import csv
import gzip
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu

from dplogs.detect.autoencoder import (
    AutoencoderConfig, init_params, train_autoencoder, train_autoencoder_nonprivate,
)
from dplogs.detect.features import clip_rows, feature_batches
from dplogs.detect.kmeans import init_centroids, plan_kmeans, train_kmeans, train_kmeans_nonprivate
from dplogs.detect.sessions import count_vectors
from dplogs.privacy import Charge
from dplogs.privacy.dpsgd import plan_dpsgd, rho_for_epsilon

DATA = Path(__file__).resolve().parents[1] / "../shared/datasets/labeled"
EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0)
DELTA = 1e-6
CLIP = 1.0
THRESHOLD_QUANTILE = 0.995
HDFS_NORMALS, HDFS_ANOMALIES = 558_223, 16_838


@dataclass
class Split:
    name: str
    vocab: int
    train: np.ndarray
    test: np.ndarray
    labels: np.ndarray  # 1 = anomaly
    normal_weight: float  # each test normal stands for this many population normals (F1 only)
    contamination: float = 0.0  # public expected anomaly share of the (unlabelled) training set
    ae_steps: int = 100
    ae_sampling_rate: float = 0.2


def _hdfs(path: Path) -> list[list[int]]:
    with gzip.open(path, "rt") as f:
        return [[int(t) for t in line.strip().split(",")[-1].split()] for line in f if line.strip()]


def _features(seqs, vocab: int, cap: float) -> np.ndarray:
    return clip_rows(count_vectors(seqs, vocab_size=vocab, cap=cap), CLIP)


def load_splits(seed: int) -> list[Split]:
    # the split is research bookkeeping, not a release: a seeded numpy generator is fine here
    rng = np.random.default_rng(seed)
    d = DATA / "hdfs_full_sampled"
    normal = _features(_hdfs(d / "loghub_hdfs_train.gz"), 34, 300)
    anomal = _features(_hdfs(d / "loghub_hdfs_test_abnormal.gz"), 34, 300)
    pn, pa = rng.permutation(len(normal)), rng.permutation(len(anomal))
    n_half, a_half = len(normal) // 2, len(anomal) // 2
    contam = round(n_half * HDFS_ANOMALIES / HDFS_NORMALS)  # anomalies at the population rate
    train = np.vstack([normal[pn[:n_half]], anomal[pa[:contam]]])
    test_n, test_a = normal[pn[n_half:]], anomal[pa[a_half:]]
    splits = [Split("hdfs-loglizer", 34, train, np.vstack([test_n, test_a]),
                    np.r_[np.zeros(len(test_n)), np.ones(len(test_a))], HDFS_NORMALS / len(normal),
                    contamination=contam / len(train))]
    dl_train = _features(_hdfs(d / "deeplog_hdfs_train.gz"), 34, 300)
    dl_anom = _features(_hdfs(d / "deeplog_hdfs_test_abnormal.gz"), 34, 300)
    splits.append(Split("hdfs-deeplog", 34, dl_train, np.vstack([normal, dl_anom]),
                        np.r_[np.zeros(len(normal)), np.ones(len(dl_anom))],
                        (HDFS_NORMALS - len(dl_train)) / len(normal)))
    with gzip.open(DATA / "adfa_ld" / "adfa_ld_traces.csv.gz", "rt") as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    x = _features([[int(s) for s in r["syscalls"].split()] for r in rows], 350, 5000)
    split = np.array([r["official_split"] for r in rows])
    label = np.array([int(r["label"]) for r in rows])
    test = split != "training"
    # 350 inputs make the exact per-parameter noise ~10x costlier than HDFS: fewer, larger steps
    splits.append(Split("adfa-ld", 350, x[split == "training"], x[test], label[test], 1.0,
                        ae_steps=40, ae_sampling_rate=0.5))
    return splits


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float(mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


def f1(scores: np.ndarray, labels: np.ndarray, threshold: float, normal_weight: float) -> dict[str, float]:
    flag = scores > threshold
    tp = float((flag & (labels == 1)).sum())
    fp = float((flag & (labels == 0)).sum()) * normal_weight
    fn = float((~flag & (labels == 1)).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def kmeans_pair(s: Split, k: int = 8, iterations: int = 3):
    init = init_centroids(k, s.vocab, CLIP)
    batches = feature_batches(s.train, np.arange(len(s.train)))
    yield None, train_kmeans_nonprivate(batches, init=init, iterations=iterations, clip_norm=CLIP)
    for eps in EPSILONS:
        plan = plan_kmeans(k=k, dim=s.vocab, iterations=iterations, rho=rho_for_epsilon(eps, DELTA),
                           max_rows_per_unit=1, clip_norm=CLIP)
        yield eps, train_kmeans(batches, plan=plan, charge=Charge.for_audit(plan.loss), init=init)


def autoencoder_pair(s: Split, grad_clip: float = 0.02):
    steps, q = s.ae_steps, s.ae_sampling_rate
    init = init_params(dim=s.vocab, hidden=8)
    batches = feature_batches(s.train, np.arange(len(s.train)))
    # research: the public normaliser is set from the known training size
    config = AutoencoderConfig(hidden=8, steps=steps, sampling_rate=q, expected_batch_size=q * len(s.train))
    yield None, train_autoencoder_nonprivate(batches, dim=s.vocab, config=config, init=init)
    for eps in EPSILONS:
        plan = plan_dpsgd(epsilon=eps, delta=DELTA, sampling_rate=q, steps=steps, clip_norm=grad_clip)
        yield eps, train_autoencoder(batches, dim=s.vocab, config=config, plan=plan, max_rows_per_unit=1,
                                     charge=Charge.for_audit(plan.loss), init=init)


def run(seeds: int, partial: Path) -> list[dict]:
    """All runs; each finished (dataset, detector, seed) is appended to ``partial`` as JSON lines."""
    results = []
    for seed in range(seeds):
        for s in load_splits(seed):
            for detector, pairs in (("kmeans", kmeans_pair), ("autoencoder", autoencoder_pair)):
                t0 = time.perf_counter()
                for eps, model in pairs(s):
                    train_scores, test_scores = model.scores(s.train), model.scores(s.test)
                    thr = float(np.quantile(train_scores, THRESHOLD_QUANTILE - s.contamination))
                    row = {"dataset": s.name, "detector": detector, "epsilon": eps, "seed": seed,
                           "auroc": auroc(test_scores, s.labels),
                           **f1(test_scores, s.labels, thr, s.normal_weight)}
                    results.append(row)
                    with partial.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                print(f"seed {seed} {s.name} {detector}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return results


def summarise(results: list[dict]) -> list[dict]:
    keys = sorted({(r["dataset"], r["detector"], -1 if r["epsilon"] is None else r["epsilon"]) for r in results})
    out = []
    for ds, det, eps in keys:
        rs = [r for r in results if r["dataset"] == ds and r["detector"] == det
              and (r["epsilon"] is None if eps == -1 else r["epsilon"] == eps)]
        out.append({"dataset": ds, "detector": det, "epsilon": None if eps == -1 else eps,
                    **{f"{m}_mean": float(np.mean([r[m] for r in rs])) for m in ("auroc", "f1", "precision", "recall")},
                    "auroc_std": float(np.std([r["auroc"] for r in rs])), "runs": len(rs)})
    return out


def markdown(summary: list[dict]) -> str:
    lines = ["| dataset | detector | ε | AUROC (mean ± sd) | F1 | precision | recall | AUROC / non-private |",
             "|---|---|---|---|---|---|---|---|"]
    base = {(r["dataset"], r["detector"]): r["auroc_mean"] for r in summary if r["epsilon"] is None}
    for r in summary:
        eps = "non-private" if r["epsilon"] is None else f"{r['epsilon']:g}"
        ratio = r["auroc_mean"] / base[(r["dataset"], r["detector"])]
        lines.append(f"| {r['dataset']} | {r['detector']} | {eps} | {r['auroc_mean']:.3f} ± {r['auroc_std']:.3f} | "
                     f"{r['f1_mean']:.3f} | {r['precision_mean']:.3f} | {r['recall_mean']:.3f} | {ratio:.3f} |")
    return "\n".join(lines) + "\n"


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in summary})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), sharey=True)
    for ax, ds in zip(np.atleast_1d(axes), datasets):
        for det, colour in (("kmeans", "tab:blue"), ("autoencoder", "tab:red")):
            rs = sorted((r for r in summary if r["dataset"] == ds and r["detector"] == det and r["epsilon"] is not None),
                        key=lambda r: r["epsilon"])
            ax.errorbar([r["epsilon"] for r in rs], [r["auroc_mean"] for r in rs], yerr=[r["auroc_std"] for r in rs],
                        marker="o", color=colour, label=f"DP {det}", capsize=3)
            (np_row,) = [r for r in summary if r["dataset"] == ds and r["detector"] == det and r["epsilon"] is None]
            ax.axhline(np_row["auroc_mean"], color=colour, linestyle="--", label=f"{det} (non-private)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("ε (δ = 1e-6, per session)")
        ax.set_title(ds)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("test AUROC")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"labelled datasets not found at {DATA}")
    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.out / "detector_eval_runs.jsonl"
    partial.unlink(missing_ok=True)
    results = run(args.seeds, partial)
    summary = summarise(results)
    (args.out / "detector_eval.json").write_text(json.dumps({"runs": results, "summary": summary}, indent=1) + "\n")
    table = markdown(summary)
    (args.out / "detector_eval_table.md").write_text(table)
    print(table)
    plot(summary, args.out / "detector_auroc.png")


if __name__ == "__main__":
    main()
