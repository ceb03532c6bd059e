"""A comparison whose process ended comes back from its recovery document: the configurations
(spec, the actions at their steps, the data they load) and the step it stood at; stepped there
again, every run equals the run it was. A bad document is refused with one sentence."""
import json

import pytest
import torch

from core import compare_edits, compare_file, compare_recovery, files
from core.compare import Comparison, RunSpec, config_spec
from core.session import Session
from core.spec import LoadOptimizer, SetHparam, SpecError, Step

from .test_compare import COSINE, digits_base, manual_base, same_run


def _recovered(c: Comparison, tmp_path) -> Comparison:
    path = tmp_path / "compare-1.json"
    path.write_bytes(compare_recovery.to_json(compare_edits.recovery_runs(c), c.step_count))
    again = compare_edits.open_recovery(None, path)
    again.run(compare_edits.steps_to_recover(again))
    return again


def _same(a: Comparison, b: Comparison) -> None:
    assert b.step_count == a.step_count
    assert [r.label for r in b.runs] == [r.label for r in a.runs]
    for x, y in zip(a.runs, b.runs):
        assert same_run(y.session, x.session), x.label


def test_a_comparison_with_a_run_added_mid_way_and_a_promoted_branch_comes_back_equal(tmp_path):
    base = manual_base()
    s = Session(config_spec(base, "SGD", {"lr": 0.1}, None))
    s.apply(Step(2))
    s.apply(SetHparam(0, "lr", 0.03))  # an edit at step 2
    s.apply(Step(1))
    s.apply(SetHparam(0, "lr", 0.2))  # and one at step 3, the comparison stops at 5
    c = Comparison([RunSpec.from_branch(s, 0), RunSpec("", config_spec(base, "Adam", {}, None))])
    c.run(3)
    c.add(RunSpec("", config_spec(base, "RMSprop", {"lr": 0.01}, None)))
    c.run(2)
    again = _recovered(c, tmp_path)
    _same(c, again)
    c.run(3)
    again.run(3)
    _same(c, again)


def test_a_comparison_opened_from_a_file_is_recovered_from_its_runs_journals(tmp_path):
    base = digits_base()
    c = Comparison([RunSpec("", config_spec(base, "SGD", {"lr": 0.05, "momentum": 0.9}, None)),
                    RunSpec("", config_spec(base, "Adam", {}, COSINE))])
    c.run(4)
    path = tmp_path / "c.optimlab-compare"
    compare_file.save(c, path)
    opened = compare_file.load(path)
    assert all(r.source is None for r in opened.runs)  # nothing it was made from: its journals
    opened.runs[1].session.apply(SetHparam(0, "lr", 0.002))  # an edit after opening
    opened.run(3)
    _same(opened, _recovered(opened, tmp_path))


def test_the_data_a_run_loads_travels_in_the_document_once(tmp_path):
    base = manual_base()
    s = Session(config_spec(base, "Adam", {"lr": 0.01}, None))
    s.apply(Step(3))
    state = s.optimizer.state_dict()
    t = Session(config_spec(base, "Adam", {"lr": 0.01}, None))
    t.apply(Step(1))
    torch.save(state, tmp_path / "adam.pt")
    t.apply(LoadOptimizer(path=str(tmp_path / "adam.pt")))  # a state_dict from a file, loaded at step 1
    (tmp_path / "adam.pt").unlink()  # the file is gone: the session holds its data
    c = Comparison([RunSpec.from_branch(t, 0), RunSpec.from_branch(t, 0, "again")])
    c.run(4)
    text = compare_recovery.to_json(compare_edits.recovery_runs(c), c.step_count)
    assert len(json.loads(text)["blobs"]) == 1
    _same(c, _recovered(c, tmp_path))


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format="something-else"), "not what optimlab keeps to recover a comparison"),
    (lambda d: d.update(version=99), "newer optimlab"),
    (lambda d: d.update(runs=d["runs"][:1]), "runs"),
    (lambda d: d["runs"][1].update(label=d["runs"][0]["label"]), "same label"),
    (lambda d: d["runs"][1]["session"]["spec"].update(seed=99), "seed"),
    (lambda d: d["runs"][0].update(script=[{"at": 1, "op": "step", "n": 2}]), "edits only"),
    (lambda d: d["runs"][0].update(script=[{"at": 3, "op": "set_hparam", "group": 0, "name": "lr", "value": 0.1},
                                           {"at": 1, "op": "set_hparam", "group": 0, "name": "lr", "value": 0.1}]),
     "no valid step"),
    (lambda d: d["runs"][0].update(script=[{"at": 1, "op": "load_optimizer", "blob": "nowhere"}]), "does not hold"),
])
def test_a_bad_recovery_document_is_refused_with_one_sentence_naming_it(tmp_path, change, message):
    base = manual_base()
    c = Comparison([RunSpec("", config_spec(base, "SGD", {"lr": 0.1}, None)),
                    RunSpec("", config_spec(base, "Adam", {}, None))])
    doc = json.loads(compare_recovery.to_json(compare_edits.recovery_runs(c), 2))
    change(doc)
    path = tmp_path / "compare-7.json"
    path.write_text(json.dumps(doc))
    with pytest.raises((files.LoadError, SpecError)) as e:
        compare_edits.open_recovery(None, path)
    assert "compare-7.json" in str(e.value) and message in str(e.value)
    assert "\n" not in str(e.value)


def test_a_malicious_pickle_in_a_recovery_document_is_refused_unexecuted(tmp_path, capfd):
    import base64
    import pickle

    class Boom:
        def __reduce__(self):
            return (print, ("EXECUTED",))
    base = manual_base()
    c = Comparison([RunSpec("", config_spec(base, "SGD", {"lr": 0.1}, None)),
                    RunSpec("", config_spec(base, "Adam", {}, None))])
    doc = json.loads(compare_recovery.to_json(compare_edits.recovery_runs(c), 2))
    doc["blobs"] = {"x": base64.b64encode(pickle.dumps(Boom())).decode()}
    doc["runs"][0]["script"] = [{"at": 1, "op": "load_optimizer", "blob": "x"}]
    path = tmp_path / "compare-8.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(files.LoadError):
        compare_edits.open_recovery(None, path)
    assert "EXECUTED" not in capfd.readouterr().out
    assert torch.is_tensor(torch.zeros(1))
