"""scikit-learn detectors on layer-wise AE features: unsupervised by default, supervised when
attack samples exist. Higher score = less like clean data."""

from __future__ import annotations

import zipfile

import numpy as np
import skops.io as sio
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from pipeline.errors import WeightsError

UNSUPERVISED = ("iforest",)


def fit_unsupervised(X_clean: np.ndarray, seed: int = 0):
    return make_pipeline(StandardScaler(), IsolationForest(n_estimators=100, random_state=seed)).fit(X_clean)


def fit_supervised(X_clean: np.ndarray, X_attack: np.ndarray, seed: int = 0):
    """RBF SVM with C and gamma chosen by cross-validated ROC-AUC, as in the paper."""
    X = np.concatenate([X_clean, X_attack])
    y = np.r_[np.zeros(len(X_clean)), np.ones(len(X_attack))]
    grid = {"svc__C": [0.1, 1, 10, 100], "svc__gamma": ["scale", 0.01, 0.1]}
    search = GridSearchCV(make_pipeline(StandardScaler(), SVC()), grid, scoring="roc_auc",
                          cv=StratifiedKFold(4, shuffle=True, random_state=seed))
    return search.fit(X, y).best_estimator_


def score(detector, X: np.ndarray) -> np.ndarray:
    if isinstance(detector.steps[-1][1], IsolationForest):
        return -detector.score_samples(X)
    return detector.decision_function(X)


def dumps(detector) -> bytes:
    return sio.dumps(detector, compression=zipfile.ZIP_DEFLATED)


def loads(data: bytes, where: str):
    """skops, not pickle: only scikit-learn and numpy types may be built from the file."""
    untrusted = sio.get_untrusted_types(data=data)
    bad = [t for t in untrusted if not t.split(".")[0] in ("sklearn", "numpy", "scipy")]
    if bad:
        raise WeightsError(f"{where}: detector holds types outside scikit-learn/numpy: {bad[:3]}",
                           "retrain the screen with `dvc repro train_screen`, or use screen weights you trust")
    return sio.loads(data, trusted=untrusted)
