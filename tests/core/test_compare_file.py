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
    (lambda d: _rewrite(d, "run1.optimlab", lambda b: None), "has no run1.optimlab"),
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


def test_a_comparison_file_with_a_malicious_pickle_is_refused_unexecuted(tmp_path, capfd):
    class Boom:
        def __reduce__(self):
            return (print, ("executed",))
    c = Comparison([RunSpec("", config_spec(manual_base(), "SGD", {}, None)),
                    RunSpec("", config_spec(manual_base(), "Adam", {}, None))])
    import pickle
    evil = _rewrite(compare_file.pack(c), "cross.pt", lambda b: pickle.dumps({"grid": Boom()}))
    path = tmp_path / "evil.optimlab-compare"
    path.write_bytes(evil)
    with pytest.raises(files.LoadError, match="not a readable torch.save file|Refused") as info:
        compare_file.load(path)
    assert "evil.optimlab-compare" in str(info.value)
    assert "executed" not in capfd.readouterr().out
