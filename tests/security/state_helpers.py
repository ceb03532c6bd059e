"""Shared by the state_dict security tests: small sessions, and what a refused load must leave alone."""
from __future__ import annotations

import torch

from core import files, spec as specmod
from core.cli import main
from core.session import Session
from core.spec import GradientSpec, ManualGrad, SessionSpec, TensorSpec


def session_spec(optimizer: str = "Adam", **hparams) -> SessionSpec:
    """Two tensors (a vector and a matrix) on a quadratic bowl; Muon gets matrices, LBFGS one
    tensor, SparseAdam sparse manual gradients."""
    if optimizer == "SparseAdam":
        return SessionSpec(optimizer=optimizer, hparams=hparams,
                           tensors=(TensorSpec("a", (3, 2), grad=ManualGrad(fill="constant", value=0.5, sparse=True)),),
                           gradient=GradientSpec(kind="manual", when="every_step"))
    if optimizer == "Muon":
        tensors = (TensorSpec("a", (2, 3)), TensorSpec("b", (3, 2)))
    elif optimizer == "LBFGS":
        tensors = (TensorSpec("a", (2, 3)),)
    else:
        tensors = (TensorSpec("a", (2,)), TensorSpec("b", (3, 2)))
    return SessionSpec(optimizer=optimizer, hparams=hparams, tensors=tensors,
                       gradient=GradientSpec(kind="objective", objective="quadratic", condition=5.0),
                       zero_grad_each_step=True)


def session(optimizer: str = "Adam", steps: int = 0, **hparams) -> Session:
    s = Session(session_spec(optimizer, **hparams))
    if steps:
        s.step(steps)
    return s


def state_of(optimizer: str = "Adam", steps: int = 3, **hparams) -> dict:
    """A real state_dict of ``optimizer`` after a few steps (a private copy)."""
    return files._copy_state(session(optimizer, steps, **hparams).optimizer.state_dict())


def spec_file(tmp_path, optimizer: str = "Adam", **hparams):
    """The session's spec as a .json file the CLI can run."""
    p = tmp_path / f"{optimizer}.json"
    p.write_text(specmod.dumps(session_spec(optimizer, **hparams)))
    return p


def same(a, b) -> bool:
    """Deep equality of state_dicts / params (tensors bit for bit, NaN equal to NaN)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype \
            and a.shape == b.shape and a.layout == b.layout and torch.equal(a.nan_to_num(), b.nan_to_num()) \
            and torch.equal(a.isnan(), b.isnan())
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def frozen(s: Session):
    """Everything a refused load must leave as it was."""
    return ({n: p.detach().clone() for n, p in s.params.items()},
            {n: None if p.grad is None else p.grad.clone() for n, p in s.params.items()},
            files._copy_state(s.optimizer.state_dict()),
            list(s.journal), s.step_count, dict(s.blobs), list(s.group_specs))


def assert_unchanged(s: Session, before) -> None:
    params, grads, sd, journal, steps, blobs, groups = before
    assert same({n: p.detach() for n, p in s.params.items()}, params)
    assert same({n: p.grad for n, p in s.params.items()}, grads)
    assert same(s.optimizer.state_dict(), sd)
    assert s.journal == journal and s.step_count == steps and s.group_specs == groups
    assert list(s.blobs) == list(blobs) and all(s.blobs[k] is blobs[k] for k in blobs)


def one_sentence(msg: str) -> bool:
    """What a refusal looks like: one line, no traceback."""
    return bool(msg.strip()) and "\n" not in msg.strip() and "Traceback" not in msg and len(msg) < 600


def cli(capsys, *argv):
    """Run the command line in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
