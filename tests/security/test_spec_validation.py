"""Session JSON is read strictly: every bad field is one sentence naming the field (as a path)
and the file, nothing is parsed leniently, sizes are bounded, and schedulers that would
divide by zero or step past their end are refused in one sentence."""
import copy
import json
import math
import zipfile

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core import catalogue, schedulers, schema, session_file
from core.hparams import FLOAT, INT, TUPLE
from core.session import Session, StepError
from core.spec import (AddGroup, GradientSpec, GroupSpec, SchedulerSpec, SessionSpec, SpecError, TensorSpec, action_from_dict,
                       from_document, spec_from_dict)
from tests.security.spec_inputs import example_docs, open_in_app, run_in_cli

SEED = example_docs()["seed_walkthrough"]
MOONS = example_docs()["moons_mlp"]


def mutated(doc: dict, path: tuple, value=..., delete: bool = False) -> dict:
    """A deep copy of ``doc`` with the value at ``path`` replaced (or deleted)."""
    out = copy.deepcopy(doc)
    node = out
    for k in path[:-1]:
        node = node[k]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


def refusal(tmp_path, doc_or_text, name="bad.json") -> str:
    path = tmp_path / name
    path.write_text(doc_or_text if isinstance(doc_or_text, str) else json.dumps(doc_or_text))
    msg = open_in_app(path)
    assert msg is not None, "accepted"
    code, err = run_in_cli(path)
    assert code == 2 and err == f"optimlab: {msg}"
    return msg


T0 = ("spec", "tensors", 0)
CASES = {
    # lenient parses of today: a shape "22" became [2, 2], [2.7, 2] became [2, 2]
    "shape as text": (T0 + ("shape",), "22", 'spec.tensors[0].shape must be a list, not "22"'),
    "fractional size": (T0 + ("shape",), [2.7, 2], "spec.tensors[0].shape[0] must be a whole number, not 2.7"),
    "infinite size": (T0 + ("shape",), [math.inf], "spec.tensors[0].shape[0] must be a whole number, not Infinity"),
    "boolean size": (T0 + ("shape",), [True, 2], "spec.tensors[0].shape[0] must be a whole number, not true"),
    "version as text": (("version",), "1", 'version must be a whole number, not "1"'),
    "step count as text": (("journal", 0), {"op": "step", "n": "5"}, 'journal[0].n must be a whole number, not "5"'),
    "negative step count": (("journal", 0), {"op": "step", "n": -5},
                            "journal[0].n must be a whole number of at least 1, not -5"),
    "hparams as text": (("spec", "hparams"), "x", 'spec.hparams must be an object, not "x"'),
    "hparam of nested lists": (("spec", "hparams", "lr"), [1, [2]],
                               "spec.hparams.lr[1] must be true or false, a number, text or null, not [2]"),
    "tensor name a number": (T0 + ("name",), 5, "spec.tensors[0].name must be text, not 5"),
    "optimizer a list": (("spec", "optimizer"), [], "spec.optimizer must be text, not []"),
    "gradient fill a number": (T0 + ("grad", "fill"), 3, "spec.tensors[0].grad.fill must be text, not 3"),
    "unknown op": (("journal", 0), {"op": "jump"}, 'journal[0].op must be one of step, zero_grad'),
    "unknown field": (T0 + ("colour",), "red", "spec.tensors[0] has an unknown field 'colour'"),
    "unknown top-level field": (("colour",), "red", "The document has an unknown field 'colour'"),
    "set_hparam group -1": (("journal", 0), {"op": "set_hparam", "group": -1, "name": "lr", "value": 0.1},
                            "journal[0].group must be a whole number of at least 0, not -1"),
    "newer version": (("version",), 2, "written by a newer optimlab (version 2)"),
}


@pytest.mark.parametrize("path, value, message", CASES.values(), ids=CASES.keys())
def test_bad_field_is_refused_with_one_sentence_naming_field_and_file(tmp_path, path, value, message):
    msg = refusal(tmp_path, mutated(SEED, path, value))
    assert msg.startswith("bad.json: ") and message in msg, msg


def test_missing_required_field_is_named(tmp_path):
    msg = refusal(tmp_path, mutated(SEED, T0 + ("name",), delete=True))
    assert msg == "bad.json: spec.tensors[0].name is missing (it is required)"


def test_hundred_thousand_deep_json_is_one_sentence_not_a_recursion_error(tmp_path):
    text = '{"format": "optimlab-spec", "spec": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert refusal(tmp_path, text) == f"bad.json nests deeper than {schema.MAX_DEPTH} levels"


def test_five_thousand_digit_number_is_one_sentence(tmp_path):
    text = json.dumps(SEED).replace('"version": 1', '"version": ' + "7" * 5000)
    assert refusal(tmp_path, text) == f"bad.json holds a number 5000 characters long (at most {schema.MAX_NUMBER_CHARS})"


def test_text_that_is_not_json_names_the_file(tmp_path):
    assert refusal(tmp_path, '{"format": ').startswith("bad.json is not valid JSON (")


@pytest.mark.parametrize("path, value, message", [
    (T0 + ("shape",), [1, 1, 1, 1, 1], "spec.tensors[0].shape must have at most 4 items, not 5"),
    (T0 + ("shape",), [10 ** 13], f"spec.tensors[0].shape[0] must be a whole number of at most {schema.MAX_NUMEL:,}"),
    (T0 + ("shape",), [2 ** 20, 2 ** 21], "weight would hold 2,199,023,255,552 numbers"),
    (T0 + ("name",), "w" * 500, "spec.tensors[0].name must be at most 128 characters long, not 500"),
    (("spec", "description"), "d" * 20_000, "spec.description must be at most 10,000 characters long"),
    (("spec", "tensors"), [{"name": f"t{i}", "shape": [1]} for i in range(schema.MAX_TENSORS + 1)],
     f"spec.tensors must have at most {schema.MAX_TENSORS:,} items"),
    (("journal",), [{"op": "zero_grad"}] * (schema.MAX_JOURNAL + 1),
     f"journal must have at most {schema.MAX_JOURNAL:,} items"),
    (T0, {"name": "w", "shape": [2048, 1024], "init": "values", "values": [[0.0]]},
     f"Values for w can be written out for at most {schema.MAX_VALUES:,} numbers"),
    (("spec", "seed"), 2 ** 70, "Invalid seed: 1180591620717411303424"),
    (T0 + ("init",), "normal", "Invalid std for weight"),
])
def test_sizes_and_ranges_are_bounded_before_anything_is_allocated(tmp_path, path, value, message):
    doc = mutated(SEED, path, value)
    if path == T0 + ("init",):
        doc["spec"]["tensors"][0]["std"] = math.nan
    msg = refusal(tmp_path, doc)
    assert message in msg, msg


def test_group_that_leaves_a_tensor_out_is_refused_naming_it(tmp_path):
    doc = copy.deepcopy(SEED)
    doc["spec"]["tensors"].append({"name": "bias", "shape": [2]})
    doc["spec"]["groups"] = [{"tensors": ["weight"]}]
    msg = refusal(tmp_path, doc)
    assert msg == "bad.json: Tensor 'bias' is in no group: every tensor must be in one param_group to be optimized"
    # a task's model: every parameter needs a group too
    doc = mutated(MOONS, ("spec", "groups"), [{"tensors": ["fc1.weight", "fc1.bias"]}])
    assert refusal(tmp_path, doc) == ("bad.json: Tensors 'fc2.bias', 'fc2.weight', 'out.bias', 'out.weight' are in "
                                      "no group: every tensor must be in one param_group to be optimized")


def test_timeline_of_a_saved_session_is_read_strictly(tmp_path):
    good = tmp_path / "good.optimlab"
    session_file.save_session(Session(*from_document(SEED)), good)
    with zipfile.ZipFile(good) as z:
        doc, ckpt = json.loads(z.read("session.json")), z.read("checkpoint.pt")
    for path, value, message in [(("timeline", "branches", 0, "fork_step"), 1e300,
                                  "timeline.branches[0].fork_step must be a whole number, not 1e+300"),
                                 (("timeline", "step"), -1, "timeline.step must be a whole number of at least 0"),
                                 (("timeline", "branches"), "x", "timeline.branches must be a list"),
                                 (("timeline", "branches", 0, "journal", 0, "n"), "5",
                                  'timeline.branches[0].journal[0].n must be a whole number, not "5"'),
                                 (("version",), "1", 'version must be a whole number, not "1"')]:
        bad = tmp_path / "bad.optimlab"
        with zipfile.ZipFile(bad, "w") as z:
            z.writestr("session.json", json.dumps(mutated(doc, path, value)))
            z.writestr("checkpoint.pt", ckpt)
        msg = open_in_app(bad)
        assert msg.startswith(f"bad.optimlab (session.json): {message}"), msg


def test_spec_built_in_code_refuses_what_json_refuses():
    for shape in ("22", [2.7, 2], [True]):
        with pytest.raises(SpecError, match="Invalid shape"):
            TensorSpec("w", shape)
    assert TensorSpec("w", [2, torch.tensor(3).item()]).shape == (2, 3)
    with pytest.raises(SpecError, match="spec.tensors\\[0\\].shape\\[1\\] must be a whole number, not 2.7"):
        spec_from_dict({"tensors": [{"name": "w", "shape": [2, 2.7]}]})
    with pytest.raises(SpecError, match='action.n must be a whole number, not "5"'):
        action_from_dict({"op": "step", "n": "5"})
    with pytest.raises(SpecError, match="in no group"):
        SessionSpec(tensors=(TensorSpec("a", (2,)), TensorSpec("b", (2,))), groups=(GroupSpec(("a",)),)).check()


# ----- schedulers -----

# boundary values of each kind of argument; every scheduler's every argument gets all of them
BOUNDARY = {INT: [-1, 0, 1, 2, 2 ** 53 + 1], FLOAT: [0.0, -1.0, 1.0, 1e-300, 1e300, math.nan, math.inf, -math.inf],
            TUPLE: [(), (0,), (-1,), (3, 1), (2 ** 60,)]}
# small starting values, so 40 steps reach every phase (OneCycleLR's end, ConstantLR's total_iters)
SMALL = {"OneCycleLR": {"total_steps": 12, "max_lr": 0.5}, "CyclicLR": {"step_size_up": 3}, "StepLR": {"step_size": 3},
         "CosineAnnealingLR": {"T_max": 5}, "CosineAnnealingWarmRestarts": {"T_0": 3}, "PolynomialLR": {"total_iters": 4},
         "LinearLR": {"total_iters": 4}, "ConstantLR": {"total_iters": 4}}


def _sweep(name: str):
    base = schedulers.with_required(name, SMALL.get(name, {}))
    for h in schedulers.info(name).hparams:
        for v in BOUNDARY.get(h.kind, list(h.choices) or [True, False]):
            yield {**base, h.name: v}


@pytest.mark.parametrize("name", schedulers.names())
def test_scheduler_boundary_values_are_refused_at_build_or_step_cleanly(name):
    """No ZeroDivisionError, torch ValueError or traceback at step time: a bad value is refused
    when the scheduler is built, and a scheduler that cannot step says so in one sentence."""
    for params in _sweep(name):
        w = torch.zeros(2, requires_grad=True)
        opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
        try:
            sched = schedulers.make_scheduler(name, params, opt)
        except ValueError as e:
            assert str(e) and "\n" not in str(e), (params, str(e))
            continue
        for _ in range(40):
            w.grad = torch.ones(2)
            try:
                opt.step()
                schedulers.step_scheduler(sched, 1.0)
            except StepError as e:
                assert "\n" not in str(e), (params, str(e))
                break
            except schedulers.SchedulerCannotStep as e:  # the session turns this into a StepError
                assert name == "OneCycleLR" and "total_steps" in str(e), params
                break
            except RuntimeError as e:  # the optimizer's own step with an overflowing lr: a StepError in a session
                assert "overflow" in str(e), (params, str(e))
                break


COMBO = {INT: st.sampled_from([-1, 0, 1, 2, 3, 5, 10]),
         FLOAT: st.sampled_from([0.0, -1.0, 0.1, 0.5, 0.55, 0.9, 1.0, 2.0, 1e300, math.nan]),
         TUPLE: st.sampled_from([(), (0,), (1, 3), (3, 1), (2,)])}


@pytest.mark.parametrize("name", schedulers.names())
def test_scheduler_argument_combinations_that_build_also_step(name):
    """Arguments together (OneCycleLR's pct_start x total_steps, CyclicLR's exp_range gamma):
    a scheduler that builds never fails after the optimizer stepped; at most it refuses the
    step before (SchedulerCannotStep)."""
    hparams = schedulers.info(name).hparams
    draws = {h.name: COMBO.get(h.kind, st.sampled_from(list(h.choices) or [True, False])) for h in hparams}

    @settings(max_examples=40, derandomize=True, deadline=None, database=None)
    @given(st.fixed_dictionaries({}, optional=draws))
    def builds_then_steps(params):
        w = torch.zeros(2, requires_grad=True)
        opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
        try:
            sched = schedulers.make_scheduler(name, schedulers.with_required(name, params), opt)
        except ValueError:
            return
        for _ in range(25):
            w.grad = torch.ones(2)
            try:
                opt.step()
            except schedulers.SchedulerCannotStep:
                return
            except RuntimeError as e:  # the optimizer's own step with an overflowing lr
                assert "overflow" in str(e), str(e)
                return
            schedulers.step_scheduler(sched, 1.0)  # a StepError here fails the test
    builds_then_steps()


@pytest.mark.parametrize("name, params, message", [
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "mode": "exp_range", "gamma": 1e300},
     "CyclicLR: gamma must be from 0 to 1 in exp_range mode"),
    ("StepLR", {"step_size": 0}, "StepLR: step_size must be at least 1"),
    ("StepLR", {}, "StepLR: step_size is missing (torch has no default)"),
    ("CosineAnnealingLR", {"T_max": 0}, "CosineAnnealingLR: T_max must be at least 1"),
    ("ConstantLR", {"factor": 0.0}, "ConstantLR: factor must be above 0"),
    ("PolynomialLR", {"power": -1.0}, "PolynomialLR: power must be 0 or more"),
    ("OneCycleLR", {"max_lr": 0.1, "total_steps": 10, "pct_start": 1.0},
     "OneCycleLR: pct_start 1.0 with total_steps 10 leaves phase 2 of the cycle without steps"),
    ("OneCycleLR", {"max_lr": 0.1, "total_steps": 10, "pct_start": 0.55, "three_phase": True},
     "OneCycleLR: pct_start 0.55 with total_steps 10 leaves phase 3 of the cycle without steps"),
    ("OneCycleLR", {"max_lr": 0.1, "total_steps": 10, "pct_start": 0.1}, "OneCycleLR: pct_start 0.1 with total_steps"),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 0}, "CyclicLR: step_size_up must be at least 1"),
    ("ExponentialLR", {"gamma": math.nan}, "ExponentialLR: gamma must be a finite number, not nan"),
])
def test_scheduler_that_would_divide_by_zero_is_refused_when_the_session_is_built(name, params, message):
    with pytest.raises(SpecError) as e:
        Session(SessionSpec(tensors=(TensorSpec("w", (2,)),), scheduler=SchedulerSpec(name, params, "step")))
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_one_cycle_past_its_total_stops_the_run_with_one_sentence_and_changes_nothing(tmp_path):
    spec = SessionSpec(optimizer="SGD", hparams={"lr": 0.1}, tensors=(TensorSpec("xy", (2,)),),
                       gradient=GradientSpec("objective", objective="quadratic"),
                       scheduler=SchedulerSpec("OneCycleLR", {"max_lr": 0.01, "total_steps": 5}, "step"))
    s = Session(spec)
    s.step(5)
    before = s.params["xy"].detach().clone()
    with pytest.raises(StepError) as e:
        s.step(1)
    assert "OneCycleLR has taken all 5 of its total_steps" in str(e.value) and "\n" not in str(e.value)
    assert torch.equal(s.params["xy"], before) and s.step_count == 5
    path = tmp_path / "cycle.json"
    session_file.save_session(s, path)
    code, err = run_in_cli(path, steps=1)
    assert code == 2 and "OneCycleLR has taken all 5 of its total_steps" in err


def test_scheduler_built_for_fewer_groups_refuses_the_step_before_it_changes_anything():
    spec = SessionSpec(optimizer="SGD", hparams={"lr": 0.1}, tensors=(TensorSpec("w", (2,)),),
                       gradient=GradientSpec("objective", objective="quadratic"),
                       scheduler=SchedulerSpec("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 2}, "step"))
    s = Session(spec)
    s.step(2)
    s.apply(AddGroup((TensorSpec("v", (2,)),), {"lr": 0.05}))
    before = {n: p.detach().clone() for n, p in s.params.items()}
    with pytest.raises(StepError) as e:
        s.step(1)
    assert str(e.value) == ("SGD.step() failed: CyclicLR was built for 1 param_group(s) and cannot schedule the 2 "
                            "the optimizer has now: reset to rebuild it with every group")
    assert all(torch.equal(s.params[n], before[n]) for n in before) and s.step_count == 2


def test_form_text_that_is_not_a_finite_number_is_refused_in_a_short_sentence():
    adam = catalogue.info("Adam")
    for field, text, message in [("lr", "inf", "lr must be a finite number, not 'inf'"),
                                 ("lr", "nan", "lr must be a finite number, not 'nan'"),
                                 ("betas", "(1e999, 0.9)", "betas must hold finite numbers, not inf"),
                                 ("betas", "(" * 100_000 + ")" * 100_000, "betas must be a tuple like (0.9, 0.999)"),
                                 ("lr", "9" * 5000 + "x", "lr must be a number, not '999")]:
        with pytest.raises(ValueError) as e:
            adam.hparam(field).parse(text)
        assert str(e.value).startswith(message) and len(str(e.value)) < 120, str(e.value)
