"""The session's numbers equal a plain PyTorch script's, bit for bit, for every optimizer."""
import math

import pytest
import torch

from core import catalogue, objectives
from core.observe import make_snapshot
from core.session import Session, grad_seed, tensor_seed
from core.spec import (AddGroup, GradientSpec, ManualGrad, SessionSpec, SetHparam, Step, TensorSpec,
                       ZeroGrad)

ALL = list(catalogue.optimizer_classes())


def shapes_for(name):
    # Muon takes matrices only; the others also get a vector
    return [(3, 4), (4, 3)] if name in catalogue.NEEDS_2D else [(3, 4), (5,)]


def plain_tensors(seed, shapes, start=0):
    out = []
    for i, shape in enumerate(shapes):
        g = torch.Generator().manual_seed(tensor_seed(seed, start + i))
        t = torch.empty(shape)
        torch.nn.init.normal_(t, 0.0, 1.0, generator=g)
        out.append(t.requires_grad_(True))
    return out


def make_spec(name, kind):
    shapes = shapes_for(name)
    sparse = name in catalogue.NEEDS_SPARSE
    grad = ManualGrad(fill="normal", std=0.5, sparse=sparse) if kind == "manual" else None
    tensors = [TensorSpec(f"t{i}", s, grad=grad) for i, s in enumerate(shapes)]
    gradient = GradientSpec("manual", when="every_step") if kind == "manual" else \
        GradientSpec("objective", objective="quadratic", condition=10.0)
    return SessionSpec(optimizer=name, tensors=tensors, gradient=gradient, seed=7,
                       set_to_none=True, zero_grad_each_step=True)


def kinds_for(name):
    return ["manual"] if name in catalogue.NEEDS_SPARSE else ["objective", "manual"]


@pytest.mark.parametrize("name", ALL)
def test_every_optimizer_matches_plain_pytorch(name):
    for kind in kinds_for(name):
        spec = make_spec(name, kind)
        s = Session(spec)
        new_shape = (2, 2)
        add = name not in catalogue.ONE_GROUP
        s.apply(Step(3))
        s.apply(SetHparam(0, "lr", 0.005))
        if add:
            s.apply(AddGroup((TensorSpec("extra", new_shape, grad=spec.tensors[0].grad),), {"lr": 0.002}))
        s.apply(Step(4))
        s.apply(ZeroGrad(False))

        # the same in plain PyTorch
        params = plain_tensors(7, shapes_for(name))
        opt = catalogue.optimizer_classes()[name](params)
        gen = torch.Generator().manual_seed(grad_seed(7))
        group_params = [params]

        def grads():
            for p in [q for g in group_params for q in g]:
                g = torch.randn(p.shape, generator=gen) * 0.5
                p.grad = g.to_sparse() if name in catalogue.NEEDS_SPARSE else g

        def loss_fn():
            return objectives.quadratic([q for q in params], 10.0)

        def one_step():
            if name == "LBFGS":
                def closure():
                    if kind == "objective":
                        opt.zero_grad(set_to_none=True)
                        loss = loss_fn()
                        loss.backward()
                        return loss
                    grads()
                    return torch.zeros((), dtype=torch.float64)
                opt.step(closure)
                return
            opt.zero_grad(set_to_none=True)
            if kind == "manual":
                grads()
            else:
                loss_fn().backward()
            opt.step()

        if kind == "manual":
            # the session sets "once" gradients at start only for when=once; every_step draws per step
            pass
        for _ in range(3):
            one_step()
        opt.param_groups[0]["lr"] = 0.005
        if add:
            extra = plain_tensors(7, [new_shape], start=len(params))[0]
            opt.add_param_group({"params": [extra], "lr": 0.002})
            group_params.append([extra])
        for _ in range(4):
            one_step()
        opt.zero_grad(set_to_none=False)

        live = s.param_list
        plain = [q for g in opt.param_groups for q in g["params"]]
        assert len(live) == len(plain)
        for a, b in zip(live, plain):
            assert torch.equal(a, b), f"{name}/{kind}: parameters differ"
            assert (a.grad is None) == (b.grad is None)
            if a.grad is not None:
                da = a.grad.to_dense() if a.grad.is_sparse else a.grad
                db = b.grad.to_dense() if b.grad.is_sparse else b.grad
                assert torch.equal(da, db)
        sd_a, sd_b = s.optimizer.state_dict(), opt.state_dict()
        assert sd_a["param_groups"] == sd_b["param_groups"]
        assert sd_a["state"].keys() == sd_b["state"].keys()
        for k in sd_a["state"]:
            assert sd_a["state"][k].keys() == sd_b["state"][k].keys()
            for key, va in sd_a["state"][k].items():
                vb = sd_b["state"][k][key]
                if isinstance(va, torch.Tensor):
                    assert torch.equal(va, vb), f"{name}/{kind}: state {key} differs"
                elif isinstance(va, list):
                    assert len(va) == len(vb)
                    for x, y in zip(va, vb):
                        assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
                else:
                    assert va == vb or (isinstance(va, float) and math.isnan(va) and math.isnan(vb))


@pytest.mark.parametrize("name", ALL)
def test_inspecting_changes_no_number(name):
    """Snapshots draw no random numbers, change no dtype and move nothing."""
    kind = kinds_for(name)[0]
    a, b = Session(make_spec(name, kind)), Session(make_spec(name, kind))
    b.observer.recording = False  # b is never watched
    for _ in range(5):
        a.advance()
        make_snapshot(a, 0)
        a.observer.force_next = True  # norms, update/weight ratios and finiteness measured
        a.advance()
        a.flush()
        b.engine.step_once()
        b.engine.step_once()
    for p, q in zip(a.param_list, b.param_list):
        assert p.dtype == q.dtype and p.device == q.device
        assert torch.equal(p, q)
    assert torch.equal(a.grad_gen.get_state(), b.grad_gen.get_state())


def test_float64_tensors_stay_float64():
    spec = SessionSpec(optimizer="Adam", tensors=[TensorSpec("w", (3,), dtype="float64")],
                       gradient=GradientSpec("objective", objective="rosenbrock"))
    s = Session(spec)
    s.step(3)
    assert s.params["w"].dtype == torch.float64
    assert all(v.dtype == torch.float64 for k, v in s.optimizer.state[s.params["w"]].items() if k != "step")
