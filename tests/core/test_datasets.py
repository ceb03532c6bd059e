"""Generated and shipped data sets: seeded, plain tensors, no global RNG, no scikit-learn."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from core import datasets

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", datasets.CLASSIFICATION_SETS)
def test_classification_set_is_two_balanced_classes_of_2d_points(name):
    x, y = datasets.make_classification(name, 101, 0.1, seed=3)
    assert x.shape == (101, 2) and x.dtype == torch.float32 and x.is_contiguous()
    assert y.shape == (101,) and y.dtype == torch.int64
    counts = torch.bincount(y, minlength=2).tolist()
    assert sorted(counts) == [50, 51]
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("name", datasets.CLASSIFICATION_SETS)
def test_classification_set_follows_its_seed_and_leaves_global_rng_alone(name):
    before = torch.get_rng_state()
    a = datasets.make_classification(name, 64, 0.2, seed=5)
    b = datasets.make_classification(name, 64, 0.2, seed=5)
    c = datasets.make_classification(name, 64, 0.2, seed=6)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_noise_free_sets_have_their_shapes():
    x, y = datasets.make_circles(80, 0.0, seed=0)
    r = x.norm(dim=1)
    assert torch.allclose(r[y == 0], torch.ones(40), atol=1e-6)
    assert torch.allclose(r[y == 1], torch.full((40,), 0.5), atol=1e-6)
    x, y = datasets.make_xor(80, 0.0, seed=0)
    assert torch.equal(y, (x[:, 0] * x[:, 1] < 0).long())
    assert (x.abs() >= 0.1 - 1e-6).all() and (x.abs() <= 0.9 + 1e-6).all()
    x, y = datasets.make_moons(80, 0.0, seed=0)
    outer = x[y == 0] + torch.tensor([0.5, 0.25])
    assert torch.allclose(outer.norm(dim=1), torch.ones(40), atol=1e-6)
    x, y = datasets.make_spirals(80, 0.0, seed=0)
    assert x.norm(dim=1).max() <= 1.0 + 1e-6


def test_linear_regression_is_x_w_plus_b_plus_noise():
    x, y, w, b = datasets.make_linear_regression(50, 3, noise=0.0, seed=1)
    assert x.shape == (50, 3) and y.shape == (50, 1) and w.shape == (3,) and b.shape == ()
    assert torch.allclose(y[:, 0], x @ w + b)
    xn, yn, wn, bn = datasets.make_linear_regression(50, 3, noise=0.5, seed=1)
    assert torch.equal(xn, x) and torch.equal(wn, w) and torch.equal(bn, b)
    resid = yn[:, 0] - (x @ w + b)
    assert 0.2 < float(resid.std()) < 1.0


def test_digits_load_from_the_shipped_file_scaled_to_unit_range():
    x, y = datasets.load_digits()
    assert x.shape == (1797, 64) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert y.dtype == torch.int64 and torch.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    img, y2 = datasets.load_digits(flat=False)
    assert img.shape == (1797, 1, 8, 8) and torch.equal(img.reshape(1797, 64), x) and torch.equal(y, y2)
    with np.load(datasets.DIGITS_PATH) as z:
        assert z["images"].dtype == np.uint8 and z["images"].shape == (1797, 8, 8)
        assert torch.equal(x * 16, torch.from_numpy(z["images"].reshape(1797, 64).astype(np.float32)))


def test_split_is_seeded_disjoint_and_complete():
    x = torch.arange(40, dtype=torch.float32).unsqueeze(1)
    y = torch.arange(40)
    tx, ty, vx, vy = datasets.train_val_split(x, y, 0.25, seed=9)
    assert len(vx) == 10 and len(tx) == 30
    assert sorted(torch.cat([ty, vy]).tolist()) == list(range(40))
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(9))
    assert torch.equal(vy, perm[:10]) and torch.equal(ty, perm[10:])
    again = datasets.train_val_split(x, y, 0.25, seed=9)
    assert all(torch.equal(a, b) for a, b in zip((tx, ty, vx, vy), again))


@pytest.mark.parametrize("call, message", [
    (lambda: datasets.make_moons(1, 0.1), "Invalid number of samples"),
    (lambda: datasets.make_circles(10, -1.0), "Invalid noise"),
    (lambda: datasets.make_classification("swirl", 10, 0.1), "Unknown data set"),
    (lambda: datasets.make_linear_regression(10, 0), "Invalid number of features"),
    (lambda: datasets.train_val_split(torch.zeros(3, 1), torch.zeros(3), 0.1), "empty"),
    (lambda: datasets.train_val_split(torch.zeros(3, 1), torch.zeros(3), 1.5), "Invalid validation fraction"),
])
def test_bad_arguments_are_refused_with_one_sentence(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_nothing_in_the_project_imports_sklearn():
    pattern = re.compile(r"^\s*(import|from)\s+sklearn", re.M)
    offenders = [str(p.relative_to(ROOT)) for folder in ("core", "app", "widgets", "resources", "benchmarks")
                 if (ROOT / folder).is_dir() for p in (ROOT / folder).rglob("*.py") if pattern.search(p.read_text())]
    assert not offenders
