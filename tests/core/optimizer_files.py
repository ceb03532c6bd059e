"""Sources of small user optimizer files the tests write to disk (trusted code, run by consent)."""

NUMPY_NOISE = '''
import numpy as np
import torch


class NumpyNoise(torch.optim.Optimizer):
    """SGD with a random step size from numpy's global generator (as PSGD's Kron draws)."""

    def __init__(self, params, lr=0.1):
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                p.add_(p.grad, alpha=-g["lr"] * float(np.random.random()))
'''
