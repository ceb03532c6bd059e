"""Plain PyTorch scripts that follow the README's recipe on any device and dtype, and the
session specs that should equal them bit for bit (used by tests/gpu and tests/core)."""
from __future__ import annotations

import math

import torch

from core import catalogue, objectives
from core.session import Session, grad_seed, tensor_seed
from core.spec import GradientSpec, ManualGrad, SessionSpec, TensorSpec

ALL = list(catalogue.optimizer_classes())
SEED = 7
STD = 0.5


def shapes_for(name: str):
    return [(3, 4), (4, 3)] if name in catalogue.NEEDS_2D else [(3, 4), (5,)]


def kinds_for(name: str):
    return ["manual"] if name in catalogue.NEEDS_SPARSE else ["objective", "manual"]


def make_spec(name: str, kind: str, device: str = "cpu", dtype: str = "float32", hparams=None,
              deterministic: bool = False) -> SessionSpec:
    sparse = name in catalogue.NEEDS_SPARSE
    grad = ManualGrad(fill="normal", std=STD, sparse=sparse) if kind == "manual" else None
    tensors = [TensorSpec(f"t{i}", s, dtype=dtype, grad=grad) for i, s in enumerate(shapes_for(name))]
    gradient = GradientSpec("manual", when="every_step") if kind == "manual" else \
        GradientSpec("objective", objective="quadratic", condition=10.0)
    return SessionSpec(optimizer=name, hparams=dict(hparams or {}), tensors=tensors, gradient=gradient, seed=SEED,
                       set_to_none=True, zero_grad_each_step=True, device=device, deterministic=deterministic)


class Plain:
    """The script: tensors made on the CPU in their dtype with the session's seeds, then
    moved; random gradients drawn on the device from a generator there seeded with
    grad_seed; zero_grad, gradient, step."""

    def __init__(self, name: str, kind: str, device: str = "cpu", dtype: str = "float32", hparams=None):
        self.name, self.kind, self.device = name, kind, device
        self.params = []
        for i, shape in enumerate(shapes_for(name)):
            t = torch.empty(shape, dtype=getattr(torch, dtype))
            torch.nn.init.normal_(t, 0.0, 1.0, generator=torch.Generator().manual_seed(tensor_seed(SEED, i)))
            self.params.append(t.to(device).requires_grad_(True))
        self.opt = catalogue.optimizer_classes()[name](self.params, **dict(hparams or {}))
        self.gens: dict[str, torch.Generator] = {}  # one per device, seeded when first used there

    def gen(self) -> torch.Generator:
        if self.device not in self.gens:
            self.gens[self.device] = torch.Generator(device=self.device).manual_seed(grad_seed(SEED))
        return self.gens[self.device]

    def grads(self):
        for p in self.params:
            g = torch.randn(p.shape, generator=self.gen(), dtype=p.dtype, device=self.device) * STD
            p.grad = g.to_sparse() if self.name in catalogue.NEEDS_SPARSE else g

    def loss(self):
        return objectives.quadratic(self.params, 10.0)

    def step(self):
        opt = self.opt
        if self.name == "LBFGS":
            def closure():
                if self.kind == "objective":
                    opt.zero_grad(set_to_none=True)
                    loss = self.loss()
                    loss.backward()
                    return loss
                self.grads()
                return torch.zeros((), dtype=torch.float64)
            opt.step(closure)
            return
        opt.zero_grad(set_to_none=True)
        if self.kind == "manual":
            self.grads()
        else:
            self.loss().backward()
        opt.step()

    def move(self, device: str):
        """What a script does to move: parameters (same objects) and gradients, then the state
        through state_dict/load_state_dict (torch places it), with the dtypes torch's load
        casts put back (ASGD's float32 eta of a bfloat16 tensor stays float32)."""
        sd = self.opt.state_dict()
        for p in self.params:
            g = p.grad
            p.data = p.data.to(device)
            if g is not None:
                p.grad = g.to(device)
        self.opt.load_state_dict(sd)
        params = [p for g in self.opt.param_groups for p in g["params"]]
        for i, saved in sd["state"].items():
            live = self.opt.state[params[i]]
            for k, v in saved.items():
                if isinstance(v, torch.Tensor) and v.dtype != live[k].dtype:
                    live[k] = v.to(device)
        self.device = device


_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit for bit (NaNs included, which ``torch.equal`` counts as different)."""
    if a.dtype != b.dtype or a.shape != b.shape or a.device != b.device:
        return False
    if a.is_floating_point():
        n = a.element_size()
        return torch.equal(a.detach().reshape(-1).view(_INT[n]), b.detach().reshape(-1).view(_INT[n]))
    return torch.equal(a, b)


def assert_same(s: Session, opt: torch.optim.Optimizer, what: str = "") -> None:
    """Parameters, gradients and every state entry equal (torch.equal), and the same groups."""
    live = s.param_list
    plain = [q for g in opt.param_groups for q in g["params"]]
    assert len(live) == len(plain)
    for a, b in zip(live, plain):
        assert a.dtype == b.dtype and a.device == b.device, what
        assert same_bits(a, b), f"{what}: parameters differ"
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            da = a.grad.to_dense() if a.grad.is_sparse else a.grad
            db = b.grad.to_dense() if b.grad.is_sparse else b.grad
            assert same_bits(da, db), f"{what}: gradients differ"
    sd_a, sd_b = s.optimizer.state_dict(), opt.state_dict()
    assert sd_a["param_groups"] == sd_b["param_groups"]
    assert sd_a["state"].keys() == sd_b["state"].keys()
    for k in sd_a["state"]:
        assert sd_a["state"][k].keys() == sd_b["state"][k].keys()
        for key, va in sd_a["state"][k].items():
            vb = sd_b["state"][k][key]
            if isinstance(va, torch.Tensor):
                assert va.dtype == vb.dtype and va.device == vb.device, f"{what}: state {key}"
                assert same_bits(va, vb), f"{what}: state {key} differs"
            elif isinstance(va, list):
                assert len(va) == len(vb)
                for x, y in zip(va, vb):
                    assert same_bits(x, y) if isinstance(x, torch.Tensor) else x == y
            else:
                assert va == vb or (isinstance(va, float) and math.isnan(va) and math.isnan(vb))
