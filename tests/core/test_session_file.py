"""Whole sessions on disk: reopening continues exactly like a session that was never closed."""
import io
import json
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from core import files, session_file
from core.runner import run_steps
from core.session import Session
from core.spec import (AddGroup, GradientSpec, GroupSpec, ManualGrad, SessionSpec, SetHparam, SpecError,
                       TensorSpec, dumps, loads, spec_to_dict)

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "resources" / "examples" / "seed_walkthrough.json"
MORE = 7


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype \
            and a.shape == b.shape and a.layout == b.layout \
            and torch.equal(a.to_dense() if a.is_sparse else a, b.to_dense() if b.is_sparse else b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def assert_same_session(a: Session, b: Session):
    assert list(a.params) == list(b.params)
    for n in a.params:
        assert same(a.params[n].detach(), b.params[n].detach()), n
        assert same(a.params[n].grad, b.params[n].grad), f"{n}.grad"
    assert same(a.optimizer.state_dict(), b.optimizer.state_dict())
    assert a.step_count == b.step_count
    assert same(a.loss, b.loss)
    assert a.journal == b.journal


def seed():
    spec, journal = loads(SEED.read_text())
    return Session(spec, journal)


def adam_rosenbrock():
    spec = SessionSpec(optimizer="Adam", hparams={"lr": 0.02, "betas": [0.8, 0.95]},
                       tensors=(TensorSpec("xy", (2,), init="values", values=[-1.2, 1.0]),),
                       gradient=GradientSpec(kind="objective", objective="rosenbrock"), zero_grad_each_step=True)
    s = Session(spec)
    run_steps(s, 5)  # as the app runs: records history (loss, norms, path)
    assert s.history.n == 5
    return s


def random_manual():
    """Random gradients drawn afresh every step: the generator's state must come back too."""
    spec = SessionSpec(optimizer="RMSprop", hparams={"lr": 0.01, "momentum": 0.5}, seed=3,
                       tensors=(TensorSpec("w", (3, 2), init="normal", grad=ManualGrad(fill="normal", std=0.5)),
                                TensorSpec("b", (2,), dtype="float64", init="uniform",
                                           grad=ManualGrad(fill="normal"))),
                       groups=(GroupSpec(("w",)), GroupSpec(("b",), {"lr": 0.001})),
                       gradient=GradientSpec(kind="manual", when="every_step"))
    s = Session(spec)
    s.step(4)
    s.apply(SetHparam(1, "alpha", 0.9))
    s.apply(AddGroup((TensorSpec("v", (2, 2), init="xavier_uniform", grad=ManualGrad(fill="normal")),),
                     {"lr": 0.05}))
    s.step(3)
    return s


def lbfgs_quadratic():
    spec = SessionSpec(optimizer="LBFGS", hparams={"lr": 0.5, "history_size": 4, "max_iter": 3},
                       tensors=(TensorSpec("x", (2, 2), init="uniform", low=-2, high=2),),
                       gradient=GradientSpec(kind="objective", objective="quadratic", condition=30.0))
    s = Session(spec)
    s.step(3)
    return s


CASES = {"seed": seed, "adam_rosenbrock": adam_rosenbrock, "random_manual": random_manual,
         "lbfgs_quadratic": lbfgs_quadratic}


@pytest.mark.parametrize("make", CASES.values(), ids=CASES.keys())
def test_reopened_session_continues_like_one_never_closed(tmp_path, make):
    s = make()
    path = tmp_path / "run.optimlab"
    session_file.save_session(s, path)
    r = session_file.load_session(path)
    assert_same_session(s, r)
    ha, hb = s.history.to_arrays(), r.history.to_arrays()  # the curves come back too
    assert ha.keys() == hb.keys()
    assert all(np.array_equal(ha[k], hb[k], equal_nan=True) for k in ha)
    assert r.group_specs == s.group_specs
    s.step(MORE)
    r.step(MORE)
    assert_same_session(s, r)
    # and once more, from the reopened one
    session_file.save_session(r, path)
    r2 = session_file.load_session(path)
    s.step(2)
    r2.step(2)
    assert_same_session(s, r2)


def test_optimlab_file_is_a_zip_with_readable_json_and_safe_checkpoint(tmp_path):
    s = seed()
    path = tmp_path / "seed.optimlab"
    session_file.save_session(s, path)
    assert zipfile.is_zipfile(path)
    with zipfile.ZipFile(path) as z:
        doc = json.loads(z.read("session.json").decode("utf-8"))
        ckpt = torch.load(io.BytesIO(z.read("checkpoint.pt")), weights_only=True)
    assert doc["spec"] == spec_to_dict(s.spec)
    assert [a["op"] for a in doc["journal"]] == ["step", "zero_grad", "add_group", "step"]
    assert doc["journal"][-1]["n"] == 50
    assert same(ckpt["head"]["params"], {n: p.detach() for n, p in s.params.items()})
    assert same(ckpt["head"]["optimizer"], s.optimizer.state_dict())


def test_json_save_is_spec_and_journal_and_replays(tmp_path):
    s = random_manual()
    path = tmp_path / "run.json"
    session_file.save_session(s, path)
    text = path.read_text()
    doc = json.loads(text)
    assert set(doc) == {"format", "version", "spec", "journal"}
    assert text == dumps(s.spec, s.journal)  # nothing loaded, at the head: exactly spec + journal
    r = session_file.load_session(path)
    assert_same_session(s, r)
    s.step(MORE)
    r.step(MORE)
    assert_same_session(s, r)
    for make in (seed, adam_rosenbrock, lbfgs_quadratic):
        s = make()
        session_file.save_session(s, path)
        assert_same_session(s, session_file.load_session(path))


def _zip(path, entries: dict):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)


def _bad_files(tmp_path):
    good = tmp_path / "good.optimlab"
    session_file.save_session(seed(), good)
    with zipfile.ZipFile(good) as z:
        doc = json.loads(z.read("session.json"))
        ckpt = z.read("checkpoint.pt")
    spec_doc = json.loads(SEED.read_text())
    out = {}

    def put(name, data):
        p = tmp_path / name
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data)
        out[name] = p

    put("random.optimlab", random.Random(0).randbytes(4096))
    put("random.json", random.Random(1).randbytes(100))
    put("empty.optimlab", b"")
    _zip(tmp_path / "nojson.optimlab", {"checkpoint.pt": ckpt})
    out["nojson.optimlab"] = tmp_path / "nojson.optimlab"
    _zip(tmp_path / "list.optimlab", {"session.json": "[1, 2]", "checkpoint.pt": ckpt})
    out["list.optimlab"] = tmp_path / "list.optimlab"
    _zip(tmp_path / "badckpt.optimlab", {"session.json": json.dumps(doc), "checkpoint.pt": b"garbage"})
    out["badckpt.optimlab"] = tmp_path / "badckpt.optimlab"
    unknown = json.loads(json.dumps(doc))
    unknown["timeline"]["branches"][0]["spec"]["optimizer"] = "Adamantium"
    _zip(tmp_path / "unknown.optimlab", {"session.json": json.dumps(unknown), "checkpoint.pt": ckpt})
    out["unknown.optimlab"] = tmp_path / "unknown.optimlab"
    layout = json.loads(json.dumps(doc))
    layout["timeline"]["branches"][0]["journal"][-1]["n"] = 49  # the journal no longer reaches the saved step
    _zip(tmp_path / "layout.optimlab", {"session.json": json.dumps(layout), "checkpoint.pt": ckpt})
    out["layout.optimlab"] = tmp_path / "layout.optimlab"
    put("notspec.json", json.dumps({"hello": "world"}))
    put("notjson.json", "{this is not json")
    put("list.json", "[1, 2, 3]")
    bad = json.loads(json.dumps(spec_doc))
    bad["spec"]["optimizer"] = "Adamantium"
    put("unknown_optimizer.json", json.dumps(bad))
    bad = json.loads(json.dumps(spec_doc))
    bad["spec"]["groups"] = [{"tensors": ["weight"]}, {"tensors": ["weight"]}]
    put("two_groups.json", json.dumps(bad))
    return out


EXPECT = {
    "random.optimlab": "neither", "random.json": "neither", "empty.optimlab": "not valid JSON",
    "nojson.optimlab": "session.json", "list.optimlab": "not an optimlab session",
    "badckpt.optimlab": "checkpoint in badckpt.optimlab is not a readable torch.save file", "unknown.optimlab": "Adamantium", "layout.optimlab": "damaged",
    "notspec.json": "not an optimlab session", "notjson.json": "not valid JSON", "list.json": "not an optimlab",
    "unknown_optimizer.json": "Unknown optimizer 'Adamantium'", "two_groups.json": "more than one group",
}


def test_damaged_or_odd_files_give_one_clear_error(tmp_path):
    bad = _bad_files(tmp_path)
    assert set(bad) == set(EXPECT)
    for name, path in bad.items():
        with pytest.raises((files.LoadError, SpecError)) as e:
            session_file.load_session(path)
        msg = str(e.value)
        assert EXPECT[name] in msg, f"{name}: {msg}"
        assert "\n" not in msg, f"{name}: {msg}"
    with pytest.raises(files.LoadError, match="No such file"):
        session_file.load_session(tmp_path / "missing.optimlab")


def test_failed_save_keeps_the_old_session_file(tmp_path, monkeypatch):
    s = seed()
    path = tmp_path / "run.optimlab"
    session_file.save_session(s, path)
    old = path.read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", crash)
    s.step(2)
    with pytest.raises(OSError):
        session_file.save_session(s, path)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.optimlab"]


def test_a_json_session_saved_after_an_undo_reopens_without_the_undone_edit(tmp_path):
    """Found by the timeline state machine: an undo leaves the session before an edit recorded at
    its step (the edit stays, for redo); a .json session reopened at that step had applied it.
    The position now says how many of the step's actions were applied, for recovery too."""
    from core import edits
    from core.spec import SetHparam, Step
    s = Session(SessionSpec(optimizer="SGD", hparams={"lr": 0.05}, tensors=(TensorSpec("w", (2,)),)))
    s.apply(Step(3))
    s.apply(SetHparam(0, "lr", 0.001))
    s.apply(SetHparam(0, "momentum", 0.5))
    s.undo()  # between the two edits at step 3
    path = tmp_path / "undone.json"
    session_file.save_session(s, path)
    for r in (session_file.load_session(path), edits.recover(None, edits.recovery_state(s), s.blobs)):
        assert r.position() == s.position() == (0, 3, 2)
        assert r.optimizer.param_groups[0]["lr"] == 0.001 and r.optimizer.param_groups[0]["momentum"] == 0
        r.goto(None)  # the undone edit is still in the branch: nothing lost
        assert r.optimizer.param_groups[0]["momentum"] == 0.5
