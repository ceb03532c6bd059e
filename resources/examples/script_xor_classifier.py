"""optimlab task script: an MLP learns XOR of the signs of two noisy coordinates.

Defines make_model(), make_data() (train_x, train_y, val_x, val_y) and
loss_fn(output, target); accuracy_fn(output, target) is optional and adds a
validation accuracy curve. Trusted code: it runs as written.
"""
import torch
from torch import nn


def _points(n, generator):
    x = torch.rand((n, 2), generator=generator) * 2 - 1
    y = ((x[:, 0] > 0) != (x[:, 1] > 0)).long()  # 1 where the signs differ
    return x + 0.05 * torch.randn((n, 2), generator=generator), y


def make_data():
    # a generator seeded here works too; torch's global RNG (seeded by optimlab) would as well
    g = torch.Generator().manual_seed(1234)
    train_x, train_y = _points(400, g)
    val_x, val_y = _points(100, g)
    return train_x, train_y, val_x, val_y


def make_model():
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))


def loss_fn(output, target):
    return nn.functional.cross_entropy(output, target)


def accuracy_fn(output, target):
    return (output.argmax(1) == target).float().mean().item()
