"""A comparison saved as one file reopens where it stood and goes on bit for bit; a bad file
is refused with one sentence that names it."""
import io
import json
import zipfile

import pytest
import torch

from core import compare_file, files
from core.compare import Comparison, RunSpec, config_spec
from core.session import Session
from core.spec import SetHparam, SpecError, Step

from .test_compare import COSINE, STEP_LR, digits_base, manual_base, same_run


def digits_comparison() -> Comparison:
    base = digits_base()
    return Comparison([RunSpec("", config_spec(base, "SGD", {"lr": 0.05, "momentum": 0.9}, STEP_LR)),
                       RunSpec("", config_spec(base, "Adam", {}, COSINE))])


def test_a_saved_comparison_reopens_and_continues_bit_identically(tmp_path):
    c = digits_comparison()
    c.run(7)
    path = tmp_path / "adam-vs-sgd.optimlab-compare"
    compare_file.save(c, path)
    again = compare_file.load(path)
    assert again.step_count == 7 and [r.label for r in again.runs] == [r.label for r in c.runs]
    before = again.make_frame(1).history
    assert all(len(h.loss) == 7 for h in before.runs)
    c.run(6)
    again.run(6)
    for a, b in zip(c.runs, again.runs):
        assert same_run(b.session, a.session), a.label
    assert again.make_frame(2).history.cross.pairs == ((0, 1),)


def test_a_promoted_branch_keeps_its_remaining_edits_across_save_and_open(tmp_path):
    base = manual_base()
    s = Session(config_spec(base, "SGD", {"lr": 0.1}, None))
    s.apply(Step(2))
    s.apply(SetHparam(0, "lr", 0.03))
    s.apply(Step(3))
    c = Comparison([RunSpec.from_branch(s, 0), RunSpec("", config_spec(base, "Adam", {}, None))])
    c.run(1)
    path = tmp_path / "branch.optimlab-compare"
    compare_file.save(c, path)
    again = compare_file.load(path)
    again.run(4)
    assert same_run(again.runs[0].session, s)


def _rewrite(data: bytes, member: str, change) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == member:
                body = change(body)
            if body is not None:
                z.writestr(info.filename, body)
    return out.getvalue()


def _json(change):
    def edit(body):
        doc = json.loads(body)
        change(doc)
        return json.dumps(doc).encode()
    return edit


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[: len(d) // 2], "is damaged|not an optimlab comparison"),
    (lambda d: _rewrite(d, "comparison.json", lambda b: b"{not json"), "comparison.json is not valid JSON"),
    (lambda d: _rewrite(d, "comparison.json", _json(lambda doc: doc.update(step=99))),
     "stands at step 4, the comparison at step 99"),
    (lambda d: _rewrite(d, "comparison.json", _json(lambda doc: doc["runs"][0].update(id="x"))),
     r"runs\[0\]\.id must be a whole number"),
    (lambda d: _rewrite(d, "comparison.json", _json(lambda doc: doc["runs"].pop())),
     "runs must have at least 2 items, not 1"),
    (lambda d: _rewrite(d, "run1.json", lambda b: None), "has no run1.json"),
    (lambda d: _rewrite(d, "tensors.pt", lambda b: None), "has no tensors.pt"),
    (lambda d: _rewrite(d, "tensors.pt", lambda b: files.to_bytes({"run0": {}})),
     "tensors.pt does not hold the tensors of its runs"),
    (lambda d: _rewrite(d, "run0.json", lambda b: b"{not json"), r"run0.json\)? is not valid JSON|not valid JSON"),
    (lambda d: _rewrite(d, "cross.pt", lambda b: files.to_bytes({"grid": torch.zeros(4, dtype=torch.int64),
                                                                  "d0-7/sum": torch.zeros(0)})),
     "series 'd0-7' of no pair of its runs"),
])
def test_a_damaged_comparison_file_is_refused_with_one_sentence_naming_it(tmp_path, damage, message):
    c = Comparison([RunSpec("", config_spec(manual_base(), "SGD", {}, None)),
                    RunSpec("", config_spec(manual_base(), "Adam", {}, None))])
    c.run(4)
    data = damage(compare_file.pack(c))
    path = tmp_path / "bad.optimlab-compare"
    path.write_bytes(data)
    with pytest.raises((files.LoadError, SpecError), match=message) as info:
        compare_file.load(path)
    text = str(info.value)
    assert "\n" not in text and "bad.optimlab-compare" in text


@pytest.mark.parametrize("member, payload", [("cross.pt", lambda boom: {"grid": boom}),
                                             ("tensors.pt", lambda boom: {"run0": boom, "run1": {}})])
def test_a_comparison_file_with_a_malicious_pickle_is_refused_unexecuted(tmp_path, capfd, member, payload):
    class Boom:
        def __reduce__(self):
            return (print, ("executed",))
    c = Comparison([RunSpec("", config_spec(manual_base(), "SGD", {}, None)),
                    RunSpec("", config_spec(manual_base(), "Adam", {}, None))])
    import pickle
    evil = _rewrite(compare_file.pack(c), member, lambda b: pickle.dumps(payload(Boom())))
    path = tmp_path / "evil.optimlab-compare"
    path.write_bytes(evil)
    with pytest.raises(files.LoadError, match="not a readable torch.save file|Refused") as info:
        compare_file.load(path)
    assert "evil.optimlab-compare" in str(info.value)
    assert "executed" not in capfd.readouterr().out


def _big_comparison(n_runs: int = 3) -> Comparison:
    from core.spec import GradientSpec, ManualGrad, SessionSpec, TensorSpec
    g = ManualGrad(fill="normal", std=0.5)
    base = SessionSpec(tensors=(TensorSpec("w", (256, 256), grad=g),), gradient=GradientSpec("manual", when="every_step"),
                       seed=3, zero_grad_each_step=True)
    opts = [("SGD", {"lr": 0.1, "momentum": 0.9}), ("Adam", {"lr": 0.01}), ("RMSprop", {"lr": 0.001})]
    return Comparison([RunSpec("", config_spec(base, name, hp, None)) for name, hp in opts[:n_runs]])


def test_tensors_the_runs_have_alike_are_stored_once_and_not_shared_once_open(tmp_path):
    """Three runs from the same 256x256 tensor: its step-0 copies (each run's first checkpoint)
    are stored once, not three times; reopened, each run has its own and they continue
    bit-identically; stepping one leaves the others' stored steps as they were."""
    from core import session_file
    c = _big_comparison()
    c.run(3)
    data = compare_file.pack(c)
    alone = sum(len(session_file.pack(r.session)) for r in c.runs)
    step0 = 256 * 256 * 4
    assert len(data) <= alone - 1.5 * step0  # two of the three step-0 copies not stored
    path = tmp_path / "three.optimlab-compare"
    path.write_bytes(data)
    back = compare_file.load(path)
    ptrs = [p.untyped_storage().data_ptr() for r in back.runs for p in r.session.params.values()]
    assert len(set(ptrs)) == len(ptrs)
    for a, b in zip(c.runs, back.runs):
        assert same_run(b.session, a.session), a.label
    back.run(4)
    c.run(4)
    for a, b in zip(c.runs, back.runs):
        assert same_run(b.session, a.session), a.label
    initial = Session(c.runs[0].session.spec).params
    for r in back.runs:  # every run's own step 0, after all of them stepped on from the file
        r.session.goto(0)
        assert all(torch.equal(p, initial[n]) for n, p in r.session.params.items()), r.label


def test_twins_are_the_same_bits_not_equal_values():
    from core.compare_file import share_twins
    z = torch.zeros(1024)
    nz = -torch.zeros(1024)
    same = z.clone()
    out = share_twins({"a": z, "b": nz, "c": same, "d": z[:10].clone()})
    assert out["c"] is out["a"] and out["b"] is not out["a"] and out["d"] is not out["a"]
    assert torch.equal(out["b"], nz) and str(out["b"][0].item()) == "-0.0"


def test_a_version_1_comparison_file_still_opens(tmp_path):
    """Version 1 stored each run as a whole .optimlab."""
    from core import session_file, spec as specmod
    c = Comparison([RunSpec("", config_spec(manual_base(), "SGD", {}, None)),
                    RunSpec("", config_spec(manual_base(), "Adam", {}, None))])
    c.run(5)
    v2 = zipfile.ZipFile(io.BytesIO(compare_file.pack(c)))
    doc = json.loads(v2.read("comparison.json"))
    doc["version"] = 1
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("comparison.json", specmod.pretty_json(doc).encode())
        for r in c.runs:
            with r.own_rng():
                z.writestr(f"run{r.id}.optimlab", session_file.pack(r.session))
        z.writestr("cross.pt", v2.read("cross.pt"))
    path = tmp_path / "old.optimlab-compare"
    path.write_bytes(out.getvalue())
    back = compare_file.load(path)
    assert back.step_count == 5
    back.run(3)
    c.run(3)
    for a, b in zip(c.runs, back.runs):
        assert same_run(b.session, a.session), a.label
