"""Analytic objectives: loss functions of the session's tensors, with autograd.

Each takes the list of participating tensors and returns a scalar loss. Tensors
are flattened and concatenated in order (a single tensor is only reshaped), so a
2-parameter objective works on one 2-element tensor or on two scalars.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def _flat(params) -> torch.Tensor:
    if len(params) == 1:
        return params[0].reshape(-1)
    return torch.cat([p.reshape(-1) for p in params])


def quadratic(params, condition: float = 100.0) -> torch.Tensor:
    """0.5 * sum(c_i x_i^2) with curvatures spread log-evenly from 1 to ``condition``."""
    x = _flat(params)
    n = x.numel()
    c = torch.logspace(0.0, math.log10(condition), n, dtype=x.dtype, device=x.device) if n > 1 \
        else torch.ones(1, dtype=x.dtype, device=x.device)
    return 0.5 * (c * x * x).sum()


def rosenbrock(params, condition: float = 0.0) -> torch.Tensor:
    """sum(100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2); minimum 0 at (1, ..., 1)."""
    x = _flat(params)
    return (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2).sum()


def rastrigin(params, condition: float = 0.0) -> torch.Tensor:
    """10 n + sum(x^2 - 10 cos(2 pi x)); many local minima, global 0 at the origin."""
    x = _flat(params)
    return 10.0 * x.numel() + (x * x - 10.0 * torch.cos(2.0 * math.pi * x)).sum()


def beale(params, condition: float = 0.0) -> torch.Tensor:
    """Beale's function of (x, y); minimum 0 at (3, 0.5)."""
    x, y = _flat(params).unbind()
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2 + (2.625 - x + x * y ** 3) ** 2


def himmelblau(params, condition: float = 0.0) -> torch.Tensor:
    """Himmelblau's function of (x, y); four minima of value 0, one at (3, 2)."""
    x, y = _flat(params).unbind()
    return (x * x + y - 11.0) ** 2 + (x + y * y - 7.0) ** 2


@dataclass(frozen=True)
class Objective:
    name: str
    fn: object
    dims: int | None  # None: any number of elements (at least 2 for rosenbrock)
    bounds: tuple[float, float, float, float]  # x0, x1, y0, y1 of the landscape view
    minimum: tuple[float, float]


OBJECTIVES = {
    "quadratic": Objective("quadratic", quadratic, None, (-2, 2, -2, 2), (0.0, 0.0)),
    "rosenbrock": Objective("rosenbrock", rosenbrock, None, (-2, 2, -1, 3), (1.0, 1.0)),
    "rastrigin": Objective("rastrigin", rastrigin, None, (-5.12, 5.12, -5.12, 5.12), (0.0, 0.0)),
    "beale": Objective("beale", beale, 2, (-4.5, 4.5, -4.5, 4.5), (3.0, 0.5)),
    "himmelblau": Objective("himmelblau", himmelblau, 2, (-5, 5, -5, 5), (3.0, 2.0)),
}


def check_size(name: str, numel: int) -> None:
    obj = OBJECTIVES[name]
    if obj.dims is not None and numel != obj.dims:
        raise ValueError(f"The {name} objective takes exactly {obj.dims} numbers; the chosen tensors hold {numel}")
    if name == "rosenbrock" and numel < 2:
        raise ValueError("The rosenbrock objective needs at least 2 numbers")


def landscape(name: str, condition: float = 100.0, size: int = 160, bounds=None):
    """Grid values of a 2-parameter objective for a contour map: (xs, ys, z)."""
    obj = OBJECTIVES[name]
    x0, x1, y0, y1 = bounds or obj.bounds
    xs = np.linspace(x0, x1, size)
    ys = np.linspace(y0, y1, size)
    X, Y = np.meshgrid(xs, ys)
    pts = torch.from_numpy(np.stack([X.ravel(), Y.ravel()], axis=1))
    with torch.no_grad():
        z = torch.stack([obj.fn([p], condition) for p in pts]) if name in ("quadratic",) \
            else _batched(name, pts[:, 0], pts[:, 1])
    return xs, ys, z.reshape(size, size).numpy()


def _batched(name, x, y):
    if name == "rosenbrock":
        return 100.0 * (y - x ** 2) ** 2 + (1.0 - x) ** 2
    if name == "rastrigin":
        return 20.0 + x * x - 10 * torch.cos(2 * math.pi * x) + y * y - 10 * torch.cos(2 * math.pi * y)
    if name == "beale":
        return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2 + (2.625 - x + x * y ** 3) ** 2
    return (x * x + y - 11.0) ** 2 + (x + y * y - 7.0) ** 2
