"""Optimizer and parameter files: they interoperate with plain PyTorch scripts, refuse
what does not fit (changing nothing), never execute a pickle, and are written atomically."""
import os
import pickle
from pathlib import Path

import pytest
import torch

from core import files
from core.session import Session
from core.spec import GradientSpec, LoadOptimizer, LoadParams, SessionSpec, TensorSpec, loads

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "resources" / "examples" / "seed_walkthrough.json"
W0 = [[-0.0947, 1.4217], [-1.3000, -1.0501]]
W2 = [[-1.7869, 2.1294, -0.1307], [0.6809, -0.0193, -0.5704], [-0.5512, -2.5028, 0.2141]]
XY0 = [-1.5, 2.0]
EXTS = (".pt", ".pth", ".pkl")


# ----- helpers -----

def seed_session(journal: bool = True) -> Session:
    spec, j = loads(SEED.read_text())
    return Session(spec, j if journal else ())


def adam_spec() -> SessionSpec:
    return SessionSpec(optimizer="Adam", hparams={"lr": 0.01},
                       tensors=(TensorSpec("xy", (2,), init="values", values=XY0),),
                       gradient=GradientSpec(kind="objective", objective="rosenbrock"),
                       zero_grad_each_step=True)  # as a plain loop: zero_grad, backward, step


def rosenbrock(x):
    return (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2).sum()


def plain_seed():
    """The seed's section 3 in a plain script: SGD with momentum, 1 step, zero_grad, add_param_group, 50 steps."""
    w = torch.tensor(W0, requires_grad=True)
    w.grad = torch.ones(2, 2)
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    opt.step()
    opt.zero_grad(set_to_none=False)
    w2 = torch.tensor(W2, requires_grad=True)
    opt.add_param_group({"params": w2, "lr": 0.0001, "nesterov": True})
    for _ in range(50):
        opt.step()
    return {"weight": w, "weight2": w2}, opt


def plain_adam(steps: int):
    xy = torch.tensor(XY0, requires_grad=True)
    opt = torch.optim.Adam([xy], lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        rosenbrock(xy).backward()
        opt.step()
    return xy, opt


def same(a, b) -> bool:
    """Deep equality of state_dicts / params (tensors bit for bit)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype \
            and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def frozen(session):
    """Everything a refused load must leave alone."""
    return ({n: p.detach().clone() for n, p in session.params.items()},
            {n: None if p.grad is None else p.grad.clone() for n, p in session.params.items()},
            files._copy_state(session.optimizer.state_dict()),
            list(session.journal), session.step_count)


def assert_unchanged(session, before):
    params, grads, sd, journal, steps = before
    assert same({n: p.detach() for n, p in session.params.items()}, params)
    assert same({n: p.grad for n, p in session.params.items()}, grads)
    assert same(session.optimizer.state_dict(), sd)
    assert session.journal == journal and session.step_count == steps


def refused(session, sd, *words):
    """Loading ``sd`` is refused with a message naming ``words``, and nothing changes."""
    before = frozen(session)
    with pytest.raises(files.LoadError) as e:
        session.load_optimizer_state(sd)
    for w in words:
        assert w in str(e.value), str(e.value)
    assert_unchanged(session, before)
    return str(e.value)


# ----- interoperability with plain scripts -----

@pytest.mark.parametrize("ext", EXTS)
def test_sgd_state_saved_by_optimlab_continues_in_plain_script(tmp_path, ext):
    s = seed_session()
    p = tmp_path / f"sgd{ext}"
    files.save_optimizer(s, p)
    sd = torch.load(p, weights_only=True)
    w = s.params["weight"].detach().clone().requires_grad_(True)
    w2 = s.params["weight2"].detach().clone().requires_grad_(True)
    w.grad = s.params["weight"].grad.clone()
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": w2, "lr": 0.0001, "nesterov": True})
    opt.load_state_dict(sd)
    assert torch.equal(opt.state[w]["momentum_buffer"], s.optimizer.state_dict()["state"][0]["momentum_buffer"])
    for _ in range(3):
        opt.step()
        s.step()
        assert torch.equal(w, s.params["weight"]) and torch.equal(w2, s.params["weight2"])
        assert torch.equal(opt.state[w]["momentum_buffer"], s.optimizer.state[s.params["weight"]]["momentum_buffer"])


@pytest.mark.parametrize("ext", EXTS)
def test_sgd_state_saved_by_plain_script_continues_in_session(tmp_path, ext):
    params, opt = plain_seed()
    po, pp = tmp_path / f"opt{ext}", tmp_path / f"params{ext}"
    torch.save(opt.state_dict(), po)
    torch.save({n: p.detach() for n, p in params.items()}, pp)
    s = seed_session()  # the session's own run of the seed matches the plain one exactly
    assert torch.equal(s.params["weight"], params["weight"])
    # a session elsewhere (just after add_group) takes over the plain script's state
    spec, journal = loads(SEED.read_text())
    s = Session(spec, journal[:3])
    s.load_optimizer_state(files.read_optimizer_state(po))
    s.load_params(files.read_params(pp))
    assert same(s.optimizer.state_dict(), opt.state_dict())
    for _ in range(3):
        opt.step()
        s.step()
    for n, p in params.items():
        assert torch.equal(s.params[n], p)
    assert same(s.optimizer.state_dict(), opt.state_dict())


@pytest.mark.parametrize("ext", EXTS)
def test_adam_state_round_trips_with_plain_script(tmp_path, ext):
    # optimlab -> plain
    s = Session(adam_spec())
    s.step(3)
    p = tmp_path / f"adam{ext}"
    files.save_optimizer(s, p)
    xy = s.params["xy"].detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([xy], lr=0.01)
    opt.load_state_dict(torch.load(p, weights_only=True))
    for _ in range(2):
        opt.zero_grad()
        rosenbrock(xy).backward()
        opt.step()
        s.step()
        assert torch.equal(xy, s.params["xy"])
    assert same(opt.state_dict(), s.optimizer.state_dict())

    # plain -> optimlab
    xy, opt = plain_adam(3)
    po, pp = tmp_path / f"plain_opt{ext}", tmp_path / f"plain_params{ext}"
    torch.save(opt.state_dict(), po)
    torch.save({"xy": xy.detach()}, pp)
    s = Session(adam_spec())
    s.apply(LoadOptimizer(path=str(po)))
    s.apply(LoadParams(path=str(pp)))
    assert same(s.optimizer.state_dict(), opt.state_dict())
    for _ in range(4):
        opt.zero_grad()
        rosenbrock(xy).backward()
        opt.step()
    s.step(4)
    assert torch.equal(s.params["xy"], xy)
    assert same(s.optimizer.state_dict(), opt.state_dict())


def test_loading_a_state_dict_does_not_advance_it():
    """The check before loading must not step the file's tensors (momentum, Adam's step)."""
    s = seed_session()
    sd = files._copy_state(s.optimizer.state_dict())
    other = seed_session()
    other.load_optimizer_state(files._copy_state(sd))
    assert same(other.optimizer.state_dict(), sd)
    s.step(2)
    other.step(2)
    assert same(other.optimizer.state_dict(), s.optimizer.state_dict())
    a = Session(adam_spec())
    a.step(2)
    sd = files._copy_state(a.optimizer.state_dict())
    b = Session(adam_spec())
    b.load_optimizer_state(sd)
    assert float(b.optimizer.state_dict()["state"][0]["step"]) == 2.0


def test_lbfgs_state_of_a_matrix_round_trips(tmp_path):
    spec = SessionSpec(optimizer="LBFGS", tensors=(TensorSpec("w", (2, 2), init="values", values=[[1.0, -2.0], [0.5, 3.0]]),),
                       gradient=GradientSpec(kind="objective", objective="quadratic", condition=10.0))
    s = Session(spec)
    s.step(2)
    files.save_optimizer(s, tmp_path / "lbfgs.pt")
    t = Session(spec)
    t.load_params(files.params_state(s))
    t.load_optimizer_state(files.read_optimizer_state(tmp_path / "lbfgs.pt"))
    s.step(2)
    t.step(2)
    assert torch.equal(s.params["w"], t.params["w"])


def test_params_and_checkpoint_round_trip_and_load_in_plain_script(tmp_path):
    s = seed_session()
    files.save_params(s, tmp_path / "params.pt")
    files.save_checkpoint(s, tmp_path / "ckpt.pth")

    params = torch.load(tmp_path / "params.pt", weights_only=True)
    assert set(params) == {"weight", "weight2"}
    assert all(torch.equal(params[n], s.params[n]) for n in params)
    ckpt = torch.load(tmp_path / "ckpt.pth", weights_only=True)
    assert {"model_state_dict", "optimizer_state_dict"} <= set(ckpt)
    assert same(ckpt["model_state_dict"], params)

    # a plain script resumes from the checkpoint, as in PyTorch's "general checkpoint" recipe
    w = ckpt["model_state_dict"]["weight"].clone().requires_grad_(True)
    w2 = ckpt["model_state_dict"]["weight2"].clone().requires_grad_(True)
    w.grad = torch.zeros(2, 2)
    opt = torch.optim.SGD([{"params": [w]}, {"params": [w2], "lr": 0.0001, "nesterov": True}], lr=0.1, momentum=0.9)
    opt.load_state_dict(ckpt["optimizer_state_dict"])
    opt.step()
    s.step()
    assert torch.equal(w, s.params["weight"])

    # and the session reads both back
    fresh = seed_session()
    fresh.step(5)
    fresh.load_params(files.read_params(tmp_path / "ckpt.pth"))
    fresh.load_optimizer_state(files.read_optimizer_state(tmp_path / "ckpt.pth"))
    assert same(fresh.optimizer.state_dict(), torch.load(tmp_path / "ckpt.pth", weights_only=True)["optimizer_state_dict"])
    fresh.load_params(files.read_params(tmp_path / "params.pt"))
    assert same(files.params_state(fresh), params)


def test_checkpoint_written_by_plain_script_loads(tmp_path):
    xy, opt = plain_adam(3)
    torch.save({"epoch": 3, "model_state_dict": {"xy": xy.detach()}, "optimizer_state_dict": opt.state_dict(),
                "loss": torch.tensor(1.5)}, tmp_path / "ckpt.tar")
    s = Session(adam_spec())
    s.load_params(files.read_params(tmp_path / "ckpt.tar"))
    s.load_optimizer_state(files.read_optimizer_state(tmp_path / "ckpt.tar"))
    assert torch.equal(s.params["xy"], xy)
    assert same(s.optimizer.state_dict(), opt.state_dict())


# ----- never executing a pickle -----

class Payload:
    """Unpickling this runs a shell command (what a malicious .pkl does)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump", "inside_state_dict"])
def test_malicious_pickle_is_refused_and_not_executed(tmp_path, how):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pkl"
    if how == "torch.save":
        torch.save(Payload(marker), path)
    elif how == "pickle.dump":
        with open(path, "wb") as f:
            pickle.dump(Payload(marker), f, protocol=2)
    else:
        sd = seed_session().optimizer.state_dict()
        sd["param_groups"][0]["lr"] = Payload(marker)
        torch.save(sd, path)
    s = seed_session()
    before = frozen(s)
    for load in (lambda: files.read_optimizer_state(path), lambda: files.read_params(path),
                 lambda: s.apply(LoadOptimizer(path=str(path)))):
        with pytest.raises(files.LoadError) as e:
            load()
        assert "not executed" in str(e.value)
        assert not marker.exists()
    assert_unchanged(s, before)
    # the payload is real: an unsafe load would have run it
    if how == "pickle.dump":
        with open(path, "rb") as f:
            pickle.load(f)
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


# ----- refusals that name the mismatch and change nothing -----

def test_refuses_wrong_group_count():
    s = seed_session()  # two groups after add_param_group
    one = seed_session(journal=False)
    one.step()
    msg = refused(s, one.optimizer.state_dict(), "1 parameter group", "2")
    assert "group" in msg


def test_refuses_wrong_group_size():
    spec = SessionSpec(optimizer="SGD", hparams={"lr": 0.1, "momentum": 0.9},
                       tensors=(TensorSpec("a", (2, 2)), TensorSpec("b", (2, 2))))
    s = Session(spec)
    w, v = torch.zeros(2, 2, requires_grad=True), torch.zeros(2, 2, requires_grad=True)
    plain = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    plain.add_param_group({"params": [v]})
    refused(s, plain.state_dict(), "parameter group")
    lone = torch.optim.SGD([torch.zeros(2, 2, requires_grad=True)], lr=0.1, momentum=0.9)
    refused(s, lone.state_dict(), "Group 0", "1 parameter", "2")


def test_refuses_state_tensor_of_wrong_shape():
    s = seed_session()
    sd = files._copy_state(s.optimizer.state_dict())
    sd["state"][0]["momentum_buffer"] = torch.zeros(3, 3)
    refused(s, sd, "momentum_buffer", "[3, 3]", "weight")
    sd["state"][0]["momentum_buffer"] = torch.zeros(4)  # right size, wrong shape
    refused(s, sd, "momentum_buffer", "[4]")


def test_refuses_state_dict_of_another_optimizer(tmp_path):
    a = Session(adam_spec())
    a.step(2)
    files.save_optimizer(a, tmp_path / "adam.pt")
    s = seed_session()
    refused(s, files.read_optimizer_state(tmp_path / "adam.pt"), "Adam", "SGD")


def test_refuses_hyperparameter_names_that_do_not_fit():
    s = seed_session()
    sd = files._copy_state(s.optimizer.state_dict())
    for g in sd["param_groups"]:
        g["warp_factor"] = 9
    refused(s, sd, "warp_factor")
    sd = files._copy_state(s.optimizer.state_dict())
    for g in sd["param_groups"]:
        del g["momentum"]
    refused(s, sd, "momentum")


def test_refuses_things_that_are_not_state_dicts(tmp_path):
    s = seed_session()
    for obj, word in (([1, 2, 3], "list"), (torch.ones(3), "Tensor"), ({"a": 1}, "neither")):
        p = tmp_path / "x.pt"
        torch.save(obj, p)
        before = frozen(s)
        with pytest.raises(files.LoadError) as e:
            s.apply(LoadOptimizer(path=str(p)))
        assert word in str(e.value)
        assert_unchanged(s, before)
    refused(s, [1, 2, 3], "Not an optimizer state_dict")
    refused(s, torch.ones(3), "Not an optimizer state_dict")
    refused(s, {"state": {}, "param_groups": "nope"}, "Not an optimizer state_dict")


def test_refuses_truncated_and_missing_files(tmp_path):
    s = seed_session()
    good = tmp_path / "good.pt"
    files.save_optimizer(s, good)
    data = good.read_bytes()
    for cut in (len(data) // 2, 10, 0):
        bad = tmp_path / "bad.pt"
        bad.write_bytes(data[:cut])
        before = frozen(s)
        with pytest.raises(files.LoadError) as e:
            s.apply(LoadOptimizer(path=str(bad)))
        assert "not a" in str(e.value) and "torch.save" in str(e.value)
        assert_unchanged(s, before)
    with pytest.raises(files.LoadError, match="No such file"):
        s.apply(LoadOptimizer(path=str(tmp_path / "nowhere.pt")))
    with pytest.raises(files.LoadError, match="No such file"):
        files.read_params(tmp_path / "nowhere.pth")


def test_refuses_params_that_do_not_fit(tmp_path):
    s = seed_session()
    good = files.params_state(s)
    cases = [
        ({**good, "bias": torch.zeros(2)}, "bias"),
        ({"weight": good["weight"]}, "weight2"),
        ({**good, "weight": torch.zeros(3, 3)}, "[3, 3]"),
        ({**good, "weight": good["weight"].double()}, "float64"),
        ({**good, "weight": [1.0, 2.0]}, "name -> tensor"),
    ]
    for sd, word in cases:
        before = frozen(s)
        with pytest.raises(files.LoadError) as e:
            s.load_params(sd)
        assert word in str(e.value), str(e.value)
        assert_unchanged(s, before)
    torch.save({"bias": torch.zeros(2)}, tmp_path / "p.pt")
    before = frozen(s)
    with pytest.raises(files.LoadError, match="bias"):
        s.apply(LoadParams(path=str(tmp_path / "p.pt")))
    assert_unchanged(s, before)


# ----- atomic writes -----

def _leftovers(folder: Path, keep: set) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_failed_save_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    s = seed_session()
    target = tmp_path / "opt.pt"
    files.save_optimizer(s, target)
    old = target.read_bytes()
    real_save = torch.save

    def half_then_crash(obj, f, *a, **k):
        import io
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_then_crash)
    s.step(3)
    for save in (files.save_optimizer, files.save_params, files.save_checkpoint):
        with pytest.raises(OSError, match="disk full"):
            save(s, target)
        assert target.read_bytes() == old
        assert _leftovers(tmp_path, {"opt.pt"}) == []
    monkeypatch.undo()
    assert same(torch.load(target, weights_only=True), seed_session().optimizer.state_dict())


def test_atomic_write_with_failing_writer(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old contents")

    def writer(f):
        f.write(b"new half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        files.atomic_write(target, writer)
    assert target.read_bytes() == b"old contents"
    assert _leftovers(tmp_path, {"f.bin"}) == []
    with pytest.raises(KeyboardInterrupt):  # also when interrupted
        files.atomic_write(target, lambda f: (f.write(b"x"), (_ for _ in ()).throw(KeyboardInterrupt()))[0])
    assert target.read_bytes() == b"old contents"
    assert _leftovers(tmp_path, {"f.bin"}) == []
    files.atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"
    assert _leftovers(tmp_path, {"f.bin"}) == []
    files.atomic_write(tmp_path / "fresh.bin", lambda f: f.write(b"1"))  # no old file: created
    assert (tmp_path / "fresh.bin").read_bytes() == b"1"
