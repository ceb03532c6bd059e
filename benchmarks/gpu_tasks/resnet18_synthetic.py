"""A ResNet-18-sized CNN (11.2 M parameters) on synthetic 3x32x32 images, 10 classes.

An optimlab task script for benchmarks/gpu.py: basic blocks [2, 2, 2, 2] with 64-512
channels and batch norm, a 3x3 stem for 32x32 inputs (as CIFAR ResNets have). Data are
seeded normal images with random labels. ``OPTIMLAB_BENCH_SMALL=1`` shrinks it for a
dry run on the CPU (widths / 8, fewer images).
"""
import os

import torch
import torch.nn.functional as F
from torch import nn

SMALL = os.environ.get("OPTIMLAB_BENCH_SMALL") == "1"
WIDTH = 8 if SMALL else 64
N_TRAIN = 512 if SMALL else 256 * 40


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNet18(nn.Module):
    def __init__(self, w=WIDTH, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        layers, cin = [], w
        for i, cout in enumerate((w, 2 * w, 4 * w, 8 * w)):
            layers += [Block(cin, cout, 1 if i == 0 else 2), Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def make_model():
    return ResNet18()


def make_data():
    x = torch.randn(N_TRAIN + 256, 3, 32, 32)
    y = torch.randint(0, 10, (N_TRAIN + 256,))
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def loss_fn(output, target):
    return F.cross_entropy(output, target)
