"""optimlab task script: a small MLP fits a noisy sine.

Open it as a task (File > Open task script, or ``core.tasks.load_script_task``).
optimlab calls make_data() with torch's RNG seeded from the task seed, then
make_model() likewise, and trains on mini-batches of train_x/train_y with
loss_fn(model(x), y). This file is trusted code: it runs as written.
"""
import math

import torch
from torch import nn


def make_data():
    """256 points of y = sin(x) + noise on [-pi, pi]; every fourth point is for validation."""
    x = torch.linspace(-math.pi, math.pi, 256).unsqueeze(1)
    y = torch.sin(x) + 0.1 * torch.randn(x.shape)  # torch's RNG, seeded by optimlab
    val = torch.arange(256) % 4 == 0
    return x[~val], y[~val], x[val], y[val]


def make_model():
    return nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))


def loss_fn(output, target):
    return nn.functional.mse_loss(output, target)
