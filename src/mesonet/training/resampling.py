"""Does image size still separate the classes after the training pipeline? A measurement.

A model can learn "this crop was resized" instead of "this face was forged" when one class
was resized more often than the other. To see whether the pipeline hides that, a linear
resampling detector (logistic regression on the log spectrum of the Laplacian residual, where
interpolation leaves its traces) is cross-validated on crops as the model would see them, to
predict the label or "the original was exactly 256 px". An AUC near 0.5 means the traces no
longer tell; the drop from the un-resampled pipeline shows what the resampling step removed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mesonet.training.augment import resample_step

BLOCKS = 16  # the spectrum's quadrant is averaged over BLOCKS x BLOCKS cells


def spectral_features(image: np.ndarray) -> np.ndarray:
    """Log magnitude spectrum of the Laplacian residual of a square RGB uint8 image, one
    quadrant averaged over a BLOCKS x BLOCKS grid (256 numbers for 256 x 256 inputs)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    residual = cv2.Laplacian(gray, cv2.CV_32F)
    spectrum = np.log1p(np.abs(np.fft.fft2(residual)))
    half = gray.shape[0] // 2 // BLOCKS * BLOCKS
    quadrant = spectrum[:half, :half]
    cell = half // BLOCKS
    return quadrant.reshape(BLOCKS, cell, BLOCKS, cell).mean(axis=(1, 3)).ravel()


def separability(features: np.ndarray, targets: Sequence[int], seed: int = 0) -> float:
    """Cross-validated (5 folds) ROC AUC of a linear detector predicting ``targets``."""
    y = np.asarray(targets)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, features, y, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


def resampled(
    images: Sequence[np.ndarray], low: float, high: float, seed: int = 0
) -> list[np.ndarray]:
    """``images`` through the training pipeline's resampling step (seeded)."""
    step = resample_step(low, high)
    step.set_random_seed(seed)
    return [step(image=i)["image"] for i in images]


def check(
    images: Sequence[np.ndarray],
    labels: Sequence[int],
    transform: Callable[[Sequence[np.ndarray]], list[np.ndarray]] | None,
    extra_targets: dict[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """AUC of the linear detector for the label (and each extra target) on ``images``,
    after ``transform`` when given."""
    shown = transform(images) if transform is not None else list(images)
    features = np.stack([spectral_features(i) for i in shown])
    out = {"label": separability(features, labels, seed)}
    for name, target in (extra_targets or {}).items():
        if len(set(target)) == 2:
            out[name] = separability(features, target, seed)
    return out
