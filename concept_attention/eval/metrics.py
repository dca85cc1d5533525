"""Zero-shot segmentation metrics, the protocol of the ConceptAttention paper (after Chefer et al.).

Per image: one target concept against the rest (two classes, foreground and background); the target's soft
map is binarized at its own mean. Over a dataset:
- acc:  pixel accuracy, correct pixels / labelled pixels, summed over all images;
- miou: intersection over union per class (background, foreground), each summed over all images, then the
        mean of the two;
- map:  mean over images of the average precision of the soft map's pixel ranking. As in the paper's code,
        each image ranks both channels, (1 - s) for background and s for foreground, with s the map
        min-max normalised to 0..1.
Pixels marked as ignored (PascalVOC's void border, label 255) count nowhere. Pure numpy, no ComfyUI.
"""

from __future__ import annotations

import numpy as np


def binarize_at_mean(soft: np.ndarray) -> np.ndarray:
    """The paper's mask: pixels strictly above the map's own mean."""
    soft = np.asarray(soft, dtype=np.float64)
    return soft > soft.mean()


def normalize01(soft: np.ndarray) -> np.ndarray:
    """Min-max normalisation to 0..1 (a constant map becomes all zeros)."""
    soft = np.asarray(soft, dtype=np.float64)
    lo, hi = soft.min(), soft.max()
    return (soft - lo) / (hi - lo) if hi > lo else np.zeros_like(soft)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of ranking `scores` against binary `labels`, tied scores forming one threshold:
    sum over thresholds of (recall step) x (precision there), as sklearn.metrics.average_precision_score.
    0.0 when there are no positives."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    positives = labels.sum()
    if positives == 0:
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], scores.size - 1]  # threshold = each distinct score
    tp = np.cumsum(labels)[last_of_tie]
    predicted = last_of_tie + 1
    precision = tp / predicted
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def two_channel_ap(soft: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> float:
    """The paper's per-image AP: (1 - s) ranked for background and s for foreground, pooled."""
    s = normalize01(soft)
    target = np.asarray(target, dtype=bool)
    if valid is not None:
        s, target = s[valid], target[valid]
    return average_precision(np.concatenate([1 - s.ravel(), s.ravel()]),
                             np.concatenate([~target.ravel(), target.ravel()]))


class SegmentationScores:
    """Accumulates the three metrics over (soft map, ground-truth mask) pairs of the same size."""

    def __init__(self):
        self.correct = 0
        self.labelled = 0
        self.inter = np.zeros(2, dtype=np.int64)
        self.union = np.zeros(2, dtype=np.int64)
        self.aps: list[float] = []

    def add(self, soft: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None,
            mask: np.ndarray | None = None) -> None:
        """soft: the target concept's map [H, W]; target: bool [H, W]; valid: bool [H, W] pixels that count
        (None: all); mask: the binary prediction (None: `soft` binarized at its mean)."""
        soft = np.asarray(soft, dtype=np.float64)
        target = np.asarray(target, dtype=bool)
        if soft.shape != target.shape:
            raise ValueError(f"map {soft.shape} and ground truth {target.shape} differ in size")
        pred = binarize_at_mean(soft) if mask is None else np.asarray(mask, dtype=bool)
        valid = np.ones_like(target) if valid is None else np.asarray(valid, dtype=bool)
        p, t = pred[valid], target[valid]
        self.correct += int((p == t).sum())
        self.labelled += int(t.size)
        for cls, (pc, tc) in enumerate(((~p, ~t), (p, t))):
            self.inter[cls] += int((pc & tc).sum())
            self.union[cls] += int((pc | tc).sum())
        self.aps.append(two_channel_ap(soft, target, valid))

    def __len__(self) -> int:
        return len(self.aps)

    def result(self) -> dict:
        """{"acc", "miou", "map"} in percent (as the paper reports them), and "n" images."""
        eps = np.spacing(1.0)
        iou = self.inter / (self.union + eps)
        return {"acc": round(100 * float(self.correct / (self.labelled + eps)), 2),
                "miou": round(100 * float(iou.mean()), 2),
                "map": round(100 * float(np.mean(self.aps)) if self.aps else 0.0, 2),
                "n": len(self.aps)}


def centre_prior(height: int, width: int, sigma: float = 0.25) -> np.ndarray:
    """The centre-prior baseline: an isotropic Gaussian at the image centre, sigma in image widths."""
    y = (np.arange(height) + 0.5) / height - 0.5
    x = (np.arange(width) + 0.5) / width - 0.5
    return np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma ** 2))
