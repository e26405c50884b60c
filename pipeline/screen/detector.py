"""scikit-learn detectors on layer-wise AE features: unsupervised by default, supervised when
attack samples exist. Higher score = less like clean data."""

from __future__ import annotations

import zipfile

import numpy as np
import skops.io as sio
from scipy.special import logsumexp
from sklearn.ensemble import IsolationForest
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from pipeline.errors import WeightsError

# gmm (the default): a 4-component full-covariance Gaussian mixture, scored by negative log-likelihood.
# It replaced the Isolation Forest after benchmarks/screen_auroc.py: on the condition classifier's
# features it separates FGSM and PGD from clean crops far better (see results/screen_auroc.md).
UNSUPERVISED = ("gmm", "iforest")


def fit_unsupervised(X_clean: np.ndarray, seed: int = 0, kind: str = "gmm", components: int = 4):
    if len(X_clean) < 2:
        raise ValueError(f"the screen's detector needs at least 2 clean samples to fit, got {len(X_clean)}: "
                         "give its target more validation inputs (train_screen.targets.<stage>.val)")
    if kind == "gmm":
        # no more components than half the samples, so each one has data to estimate its covariance
        k = max(1, min(components, len(X_clean) // 2))
        model = GaussianMixture(k, covariance_type="full", random_state=seed)
    elif kind == "iforest":
        model = IsolationForest(n_estimators=100, random_state=seed)
    else:
        raise ValueError(f"unknown unsupervised detector {kind!r}; use one of {UNSUPERVISED}")
    return make_pipeline(StandardScaler(), model).fit(X_clean)


def fit_supervised_cv(X_clean: np.ndarray, X_attack: np.ndarray, seed: int = 0):
    """RBF SVM with C and gamma chosen by cross-validated ROC-AUC, as in the paper; also that
    ROC-AUC, so a caller can choose between feature sets the same way."""
    X = np.concatenate([X_clean, X_attack])
    y = np.r_[np.zeros(len(X_clean)), np.ones(len(X_attack))]
    grid = {"svc__C": [0.1, 1, 10, 100], "svc__gamma": ["scale", 0.01, 0.1]}
    search = GridSearchCV(make_pipeline(StandardScaler(), SVC()), grid, scoring="roc_auc",
                          cv=StratifiedKFold(4, shuffle=True, random_state=seed))
    search.fit(X, y)
    return search.best_estimator_, float(search.best_score_)


def fit_supervised(X_clean: np.ndarray, X_attack: np.ndarray, seed: int = 0):
    return fit_supervised_cv(X_clean, X_attack, seed)[0]


def score(detector, X: np.ndarray) -> np.ndarray:
    if isinstance(detector, (ForestScorer, MixtureScorer)):
        return detector(X)
    if isinstance(detector.steps[-1][1], (IsolationForest, GaussianMixture)):
        return -detector.score_samples(X)
    return detector.decision_function(X)


def for_inference(detector):
    """What `score` should be given per frame: a fitted forest flattened, a scaled full-covariance
    mixture as plain numpy, any other detector as is."""
    last = detector.steps[-1][1]
    if isinstance(last, IsolationForest):
        return ForestScorer(detector)
    if (isinstance(last, GaussianMixture) and last.covariance_type == "full" and len(detector.steps) == 2
            and isinstance(detector[0], StandardScaler)):
        return MixtureScorer(detector)
    return detector


class MixtureScorer:
    """`-GaussianMixture.score_samples` after the pipeline's StandardScaler, the same numbers in a
    few numpy lines: scikit-learn's per-call input validation costs ~1 ms, several times the
    scoring itself, and a screen scores once per depth per batch (a third of its time in a flow)."""

    def __init__(self, pipe):
        scaler, gmm = pipe[0], pipe[-1]
        self.mean = np.zeros(gmm.means_.shape[1]) if scaler.mean_ is None else scaler.mean_
        self.scale = np.ones_like(self.mean) if scaler.scale_ is None else scaler.scale_
        self.chol = gmm.precisions_cholesky_                                   # [k, d, d]
        self.shift = np.einsum("kd,kde->ke", gmm.means_, self.chol)            # means in whitened space
        d = gmm.means_.shape[1]
        log_det = np.log(np.diagonal(self.chol, axis1=1, axis2=2)).sum(1)
        self.const = np.log(gmm.weights_) + log_det - 0.5 * d * np.log(2 * np.pi)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = (np.asarray(X, np.float64) - self.mean) / self.scale
        y = np.einsum("nd,kde->kne", X, self.chol) - self.shift[:, None]
        return -logsumexp(self.const[:, None] - 0.5 * (y * y).sum(-1), axis=0)


class ForestScorer:
    """`-IsolationForest.score_samples`, the same numbers without its per-tree joblib dispatch and
    input checks (~0.2 ms a tree, so ~20 ms a call with 100 trees: most of the screen's time in a
    flow). Each tree's leaf is found by the fitted tree itself; leaf path lengths are precomputed."""

    def __init__(self, pipe):
        self.prep, forest = pipe[:-1], pipe[-1]
        n = forest.n_features_in_
        mf = forest.max_features
        indexed = forest.bootstrap_features or (mf if isinstance(mf, (int, np.integer)) else max(1, int(mf * n))) != n
        self.trees = []
        for est, feats in zip(forest.estimators_, forest.estimators_features_):
            t = est.tree_
            depth = np.zeros(t.node_count)
            for i in range(t.node_count):  # children always come after their parent
                if t.children_left[i] >= 0:
                    depth[t.children_left[i]] = depth[t.children_right[i]] = depth[i] + 1
            self.trees.append((t, feats if indexed else None, depth + _avg_path(t.n_node_samples)))
        self.denominator = len(self.trees) * _avg_path(np.array([forest.max_samples_]))[0]

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(self.prep.transform(X), dtype=np.float32)
        paths = np.zeros(len(X))
        for tree, feats, leaf_path in self.trees:
            paths += leaf_path[tree.apply(X if feats is None else np.ascontiguousarray(X[:, feats]))]
        return 2.0 ** (-paths / self.denominator) if self.denominator else np.ones(len(X))


def _avg_path(n: np.ndarray) -> np.ndarray:
    """Average path length of an unsuccessful search in a binary search tree of n points (c(n) in
    the Isolation Forest paper): what a leaf still holding n training points adds to the depth."""
    n = np.asarray(n, np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def dumps(detector) -> bytes:
    return sio.dumps(detector, compression=zipfile.ZIP_DEFLATED)


def loads(data: bytes, where: str,
          fix: str = "retrain the screen with `dvc repro train_screen`, or use screen weights you trust"):
    """skops, not pickle: only scikit-learn and numpy types may be built from the file."""
    untrusted = sio.get_untrusted_types(data=data)
    bad = [t for t in untrusted if not t.split(".")[0] in ("sklearn", "numpy", "scipy")]
    if bad:
        raise WeightsError(f"{where}: holds types outside scikit-learn/numpy: {bad[:3]}", fix)
    return sio.loads(data, trusted=untrusted)
