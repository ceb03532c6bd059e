"""Small data sets for the built-in tasks, as plain torch tensors, seeded end to end.

Every generated set draws its random numbers from its own ``torch.Generator``
seeded with ``seed`` (never the global RNG), in a fixed, documented order, so
the same arguments give the same tensors bit for bit on any machine with the
same torch. Features are float32, class labels int64, regression targets
float32 of shape (n, 1).

2-D classification sets (two classes, labels 0 and 1; ``noise`` is the standard
deviation of Gaussian noise added to every point):
  * ``moons``: two interleaving half circles;
  * ``circles``: a circle of radius 1 around one of radius 0.5;
  * ``spirals``: two interleaved spirals, 1.75 turns each;
  * ``xor``: four square blobs around (+-0.5, +-0.5), label 1 where x*y < 0.
Draw order: base points (``xor`` only: one ``torch.rand``), then one
``torch.randn(n, 2)`` for the noise, then one ``torch.randperm(n)`` that mixes
the classes.

``load_digits`` reads ``resources/data/digits.npz`` (see its README); nothing is
downloaded.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

CLASSIFICATION_SETS = ("moons", "circles", "spirals", "xor")
DIGITS_PATH = Path(__file__).resolve().parents[1] / "resources" / "data" / "digits.npz"


def _check(n_samples: int, noise: float, low: int = 2) -> None:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < low:
        raise ValueError(f"Invalid number of samples: {n_samples!r} (at least {low})")
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
        raise ValueError(f"Invalid noise: {noise!r} (a finite number >= 0)")


def _halves(n: int) -> tuple[int, int]:
    """Class sizes: class 0 gets the extra point when n is odd (as scikit-learn does)."""
    return n - n // 2, n // 2


def _finish(base: torch.Tensor, labels: torch.Tensor, noise: float, g: torch.Generator):
    x = base + noise * torch.randn(base.shape, generator=g, dtype=torch.float32)
    perm = torch.randperm(base.shape[0], generator=g)
    return x[perm].contiguous(), labels[perm].contiguous()


def make_moons(n_samples: int = 200, noise: float = 0.1, seed: int = 0):
    """Two interleaving half circles: (x float32 (n, 2), y int64 (n,))."""
    _check(n_samples, noise)
    g = torch.Generator().manual_seed(seed)
    n0, n1 = _halves(n_samples)
    t0 = torch.linspace(0, math.pi, n0, dtype=torch.float64)
    t1 = torch.linspace(0, math.pi, n1, dtype=torch.float64)
    outer = torch.stack([torch.cos(t0), torch.sin(t0)], 1)
    inner = torch.stack([1 - torch.cos(t1), 0.5 - torch.sin(t1)], 1)
    # centred on the origin so a small model needs no large bias
    base = (torch.cat([outer, inner]) - torch.tensor([0.5, 0.25], dtype=torch.float64)).float()
    labels = torch.cat([torch.zeros(n0, dtype=torch.int64), torch.ones(n1, dtype=torch.int64)])
    return _finish(base, labels, noise, g)


def make_circles(n_samples: int = 200, noise: float = 0.05, seed: int = 0, factor: float = 0.5):
    """A circle of radius ``factor`` (label 1) inside one of radius 1 (label 0)."""
    _check(n_samples, noise)
    if not 0 < factor < 1:
        raise ValueError(f"Invalid circles factor: {factor} (between 0 and 1)")
    g = torch.Generator().manual_seed(seed)
    n0, n1 = _halves(n_samples)
    t0 = torch.arange(n0, dtype=torch.float64) * (2 * math.pi / n0)
    t1 = torch.arange(n1, dtype=torch.float64) * (2 * math.pi / n1)
    outer = torch.stack([torch.cos(t0), torch.sin(t0)], 1)
    inner = factor * torch.stack([torch.cos(t1), torch.sin(t1)], 1)
    base = torch.cat([outer, inner]).float()
    labels = torch.cat([torch.zeros(n0, dtype=torch.int64), torch.ones(n1, dtype=torch.int64)])
    return _finish(base, labels, noise, g)


def make_spirals(n_samples: int = 200, noise: float = 0.05, seed: int = 0, turns: float = 1.75):
    """Two interleaved spirals (label 1 is label 0's turned by half a turn), radius up to 1."""
    _check(n_samples, noise)
    g = torch.Generator().manual_seed(seed)
    n0, n1 = _halves(n_samples)
    parts = []
    for k, n in enumerate((n0, n1)):
        r = torch.linspace(0.05, 1.0, n, dtype=torch.float64)
        a = r * (2 * math.pi * turns) + k * math.pi
        parts.append(torch.stack([r * torch.cos(a), r * torch.sin(a)], 1))
    base = torch.cat(parts).float()
    labels = torch.cat([torch.zeros(n0, dtype=torch.int64), torch.ones(n1, dtype=torch.int64)])
    return _finish(base, labels, noise, g)


def make_xor(n_samples: int = 200, noise: float = 0.1, seed: int = 0):
    """Four square blobs (side 0.8, 0.1 from the axes); label 1 where x*y < 0 (XOR of the signs)."""
    _check(n_samples, noise, low=4)
    g = torch.Generator().manual_seed(seed)
    quadrant = torch.arange(n_samples) % 4  # (+,+) (-,+) (-,-) (+,-) in turn
    sx = torch.tensor([1.0, -1.0, -1.0, 1.0])[quadrant]
    sy = torch.tensor([1.0, 1.0, -1.0, -1.0])[quadrant]
    u = torch.rand((n_samples, 2), generator=g) * 0.8 + 0.1
    base = torch.stack([sx * u[:, 0], sy * u[:, 1]], 1)
    labels = (sx * sy < 0).to(torch.int64)
    return _finish(base, labels, noise, g)


_MAKERS = {"moons": make_moons, "circles": make_circles, "spirals": make_spirals, "xor": make_xor}


def make_classification(name: str, n_samples: int = 200, noise: float = 0.1, seed: int = 0):
    """One of ``CLASSIFICATION_SETS`` by name."""
    if name not in _MAKERS:
        raise ValueError(f"Unknown data set {name!r}: use one of {', '.join(CLASSIFICATION_SETS)}")
    return _MAKERS[name](n_samples, noise, seed)


def make_linear_regression(n_samples: int = 200, n_features: int = 1, noise: float = 0.1,
                           seed: int = 0):
    """``y = X w* + b* + noise * e``: returns (x (n, d), y (n, 1), w* (d,), b* ()), float32.

    Draw order from one generator: X = randn(n, d), w* = randn(d), b* = randn(()),
    e = randn(n).
    """
    _check(n_samples, noise, low=1)
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise ValueError(f"Invalid number of features: {n_features!r} (at least 1)")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n_samples, n_features), generator=g)
    w = torch.randn((n_features,), generator=g)
    b = torch.randn((), generator=g)
    e = torch.randn((n_samples,), generator=g)
    y = (x @ w + b + noise * e).unsqueeze(1)
    return x, y, w, b


def load_digits(path: str | Path | None = None, flat: bool = True):
    """The 8x8 digits: x float32 in [0, 1] (pixel / 16), (1797, 64) or (1797, 1, 8, 8); y int64."""
    p = Path(path) if path is not None else DIGITS_PATH
    if not p.is_file():
        raise FileNotFoundError(f"The digits data is missing: {p} (it ships in resources/data)")
    with np.load(p) as z:
        images = z["images"]
        labels = z["labels"]
    x = torch.from_numpy(images.astype(np.float32) / np.float32(16.0))
    x = x.reshape(len(x), 64) if flat else x.reshape(len(x), 1, 8, 8)
    return x.contiguous(), torch.from_numpy(labels.astype(np.int64))


def train_val_split(x: torch.Tensor, y: torch.Tensor, val_fraction: float = 0.2, seed: int = 0):
    """Seeded split: (train_x, train_y, val_x, val_y).

    ``perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))``;
    the first ``round(n * val_fraction)`` indices of ``perm`` are the validation
    set, the rest (in ``perm`` order) the training set. Both must be non-empty.
    """
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x has {n} samples but y has {y.shape[0]}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"Invalid validation fraction: {val_fraction} (between 0 and 1)")
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n_val > n - 1:
        raise ValueError(f"A validation fraction of {val_fraction} of {n} samples leaves "
                         "the training or the validation set empty")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = perm[:n_val], perm[n_val:]
    return x[train].contiguous(), y[train].contiguous(), x[val].contiguous(), y[val].contiguous()
