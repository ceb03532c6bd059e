"""Tensors that would not fit are refused before anything is allocated: the spec's
tensors, their gradients and the optimizer's state are counted against the memory
left, in one sentence ("weight [100000, 100000] needs 240 GB ...; 210 MB are
available"). The app's functions run in a child capped in memory, so a regression fails
instead of eating the machine; the CLI (which may build in a child of its own) is checked
on shapes no machine holds."""
import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from core import cli, edits
from core.session import Session
from core.spec import AddGroup, SessionSpec, SpecError, TensorSpec, loads

from .forked_child import MB, in_child

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "resources" / "examples" / "seed_walkthrough.json"
HUGE = [10**6, 10**6]  # 4 TB of float32: more than any machine has


@pytest.fixture(scope="module", autouse=True)
def warm():
    """Build one session before forking: torch's first optimizer loads modules, and a
    child capped in memory should spend its allowance on the test, not on imports."""
    Session(SessionSpec(tensors=(TensorSpec("w", (2, 2)),), optimizer="Adam"))


def spec_file(tmp_path, name, optimizer, shape, hparams=None, journal=()) -> Path:
    doc = {"format": "optimlab-spec", "version": 1,
           "spec": {"optimizer": optimizer, "hparams": hparams or {},
                    "tensors": [{"name": "weight", "shape": shape}]},
           "journal": list(journal)}
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def open_in_app(path):
    try:
        s = edits.open_session(None, path)
        return f"opened {list(s.params['weight'].shape)}"
    except SpecError as e:
        return f"SpecError: {re.sub(r'^[^ :]+[.]json: ', '', str(e))}"  # the file's name comes first


def cli_in_process(*argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, err.getvalue()


def assert_one_line(code, err, *words):
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


AVAILABLE = r"; [0-9.]+ [kMGT]?B are available$"


def test_a_tensor_bigger_than_memory_is_refused_before_anything_is_allocated(tmp_path):
    path = spec_file(tmp_path, "big.json", "Adam", [100000, 100000])
    result = in_child(open_in_app, path, headroom=256 * MB)
    assert result[0] == "ok", result  # a RuntimeError or MemoryError: something tried to allocate
    assert re.fullmatch(r"SpecError: weight \[100000, 100000\] needs 240 GB with its gradient and "
                        r"Adam's state" + AVAILABLE, result[1]), result[1]


def test_a_shape_no_machine_holds_is_one_sentence_in_the_app_and_the_cli(tmp_path):
    spec, _ = loads(spec_file(tmp_path, "huge.json", "SGD", HUGE, {"momentum": 0.9}).read_text())
    with pytest.raises(SpecError) as e:
        Session(spec)
    assert re.fullmatch(r"weight \[1000000, 1000000\] needs 20 TB with its gradient and SGD's state" + AVAILABLE,
                        str(e.value)), str(e.value)
    assert open_in_app(tmp_path / "huge.json") == f"SpecError: {e.value}"
    assert_one_line(*cli_in_process("run", tmp_path / "huge.json"), "needs 20 TB")


def test_the_optimizers_state_is_counted(tmp_path):
    """192 MB of weights: SGD keeps no state and fits in 1 GB; Adam's two moments do not,
    nor do LBFGS's 100 history pairs."""
    shape = [6000, 8000]
    outcomes = {}
    for optimizer in ("SGD", "Adam", "LBFGS"):
        path = spec_file(tmp_path, f"{optimizer}.json", optimizer, shape)
        result = in_child(open_in_app, path, headroom=1000 * MB)
        assert result[0] == "ok", result
        outcomes[optimizer] = result[1]
    assert outcomes["SGD"] == "opened [6000, 8000]"
    assert re.fullmatch(r"SpecError: weight \[6000, 8000\] needs 1.2 GB with its gradient and Adam's state"
                        + AVAILABLE, outcomes["Adam"]), outcomes["Adam"]
    assert re.fullmatch(r"SpecError: weight \[6000, 8000\] needs 40 GB with its gradient and LBFGS's state"
                        + AVAILABLE, outcomes["LBFGS"]), outcomes["LBFGS"]


def test_add_group_with_a_huge_tensor_is_refused_and_changes_nothing(tmp_path):
    spec, journal = loads(SEED.read_text())
    s = Session(spec, journal)
    groups, names, steps = len(s.optimizer.param_groups), list(s.params), len(s.journal)
    several = (TensorSpec("w3", tuple(HUGE)), TensorSpec("b3", (10**6,)))
    with pytest.raises(SpecError) as e:
        s.apply(AddGroup(several, {"lr": 0.01}))
    assert re.fullmatch(r"The 2 tensors need 20 TB with their gradients and SGD's state "
                        r"\(w3 alone 20 TB\)" + AVAILABLE, str(e.value)), str(e.value)
    assert (len(s.optimizer.param_groups), list(s.params), len(s.journal)) == (groups, names, steps)
    add = {"op": "add_group", "tensors": [{"name": "w2", "shape": HUGE}], "hparams": {}}
    path = spec_file(tmp_path, "grow.json", "SGD", [2, 2], journal=[add])
    assert re.fullmatch(r"SpecError: w2 \[1000000, 1000000\] needs 16 TB with its gradient and SGD's state"
                        + AVAILABLE, open_in_app(path)), open_in_app(path)
    assert_one_line(*cli_in_process("run", path), "w2 [1000000, 1000000] needs 16 TB")
