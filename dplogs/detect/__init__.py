"""DP anomaly detection (see docs/detector.md).

- :mod:`~dplogs.detect.features`: bounded, clipped feature rows per (unit, window) and their Arrow batches;
- :mod:`~dplogs.detect.kmeans`: DP k-means (zCDP) and its non-private twin;
- :mod:`~dplogs.detect.autoencoder`: DP-SGD autoencoder (PLD accountant) and its non-private twin;
- :mod:`~dplogs.detect.residuals`: scores that count directional features only above the model;
- :mod:`~dplogs.detect.model`: model files with model cards;
- :mod:`~dplogs.detect.calibration`: the DP histogram of training scores, percentiles and ``pNN`` thresholds;
- :mod:`~dplogs.detect.train`: training (a ledger-charged release) and scoring from a store;
- :mod:`~dplogs.detect.anomaly_counts`, :mod:`~dplogs.detect.timeseries`: inputs and post-processing
  for the engine's DP anomaly queries and ``dplogs timeseries``;
- :mod:`~dplogs.detect.sessions`: event-count and presence vectors for session-shaped logs.
"""
