"""Any session the app saves reopens, equal to the one saved: a property test over random
valid specs (optimizers, tensors, groups, gradient sources, training tasks, schedulers) and journals,
saved as .optimlab (checkpoint) and as .json (replayed), both reopened and compared with
torch.equal: parameters, gradients, optimizer state, step count, loss, journal, groups."""
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from core import session_file
from core.session import NonFinite, Session, StepError
from core.spec import (AddGroup, GradientSpec, GroupSpec, ManualGrad, Reset, SchedulerSpec, SessionSpec, SetGrad,
                       SetHparam, SpecError, Step, TensorSpec, ZeroGrad)
from core.task_spec import TaskSpec
from tests.core.test_session_file import assert_same_session

OPTIMIZERS = ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Rprop", "NAdam", "RAdam", "Adamax", "ASGD",
              "Adadelta", "Adafactor", "LBFGS", "Muon", "SparseAdam"]  # the first 12 take any groups and shapes
SCHEDULERS = [None, SchedulerSpec("StepLR", {"step_size": 2, "gamma": 0.5}, "step"),
              SchedulerSpec("ExponentialLR", {"gamma": 0.9}, "epoch"),
              SchedulerSpec("CosineAnnealingLR", {"T_max": 5}, "step"),
              SchedulerSpec("OneCycleLR", {"max_lr": 0.01, "total_steps": 100, "cycle_momentum": False}, "step")]
LRS = [0.001, 0.003, 0.01]


@st.composite
def shapes(draw, two_d: bool):
    dims = 2 if two_d else draw(st.integers(0, 2))
    return tuple(draw(st.lists(st.integers(1, 3), min_size=dims, max_size=dims)))


def _nested(flat: list, shape: tuple):
    if not shape:
        return flat[0]
    step = len(flat) // shape[0]
    return [_nested(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


@st.composite
def tensors(draw, name: str, optimizer: str, manual: bool):
    shape = draw(shapes(optimizer == "Muon"))
    init = draw(st.sampled_from(["zeros", "ones", "normal", "uniform", "constant", "values"]))
    values = None
    if init == "values":
        n = 1
        for s in shape:
            n *= s
        values = _nested(draw(st.lists(st.floats(-2, 2, width=32), min_size=n, max_size=n)), shape)
    grad = None
    if manual:
        sparse = optimizer == "SparseAdam"
        grad = draw(st.sampled_from([ManualGrad("normal", std=0.5, sparse=sparse),
                                     ManualGrad("constant", value=0.25, sparse=sparse)]))
    return TensorSpec(name, shape, dtype=draw(st.sampled_from(["float32", "float64"])), init=init,
                      value=0.5, values=values, grad=grad)


@st.composite
def task_specs(draw):
    """A small training task: the model's parameters are the tensors, one group per layer."""
    kind = draw(st.sampled_from(["linear_regression", "logistic_regression", "mlp"]))
    task = TaskSpec(kind, n_samples=24, hidden=(3,) if kind == "mlp" else (), batch_size=8, eval_every=2,
                    seed=draw(st.integers(0, 100)))
    return SessionSpec(optimizer=draw(st.sampled_from(OPTIMIZERS[:12])), hparams={"lr": draw(st.sampled_from(LRS))},
                       gradient=GradientSpec("task", task=task), zero_grad_each_step=True,
                       scheduler=draw(st.sampled_from(SCHEDULERS)))


@st.composite
def specs(draw):
    if draw(st.integers(0, 4)) == 0:
        return draw(task_specs())
    optimizer = draw(st.sampled_from(OPTIMIZERS))
    manual = optimizer == "SparseAdam" or draw(st.booleans())
    if optimizer == "SparseAdam" and not draw(st.booleans()):
        manual = True
    names = [f"t{i}" for i in range(draw(st.integers(1, 3)))]
    ts = tuple(draw(tensors(n, optimizer, manual)) for n in names)
    groups = ()
    if optimizer != "LBFGS" and draw(st.booleans()):
        ids = draw(st.lists(st.integers(0, 2), min_size=len(names), max_size=len(names)))
        order = sorted(set(ids), key=ids.index)
        groups = tuple(GroupSpec(tuple(n for n, g in zip(names, ids) if g == k),
                                 draw(st.sampled_from([{}, {"lr": draw(st.sampled_from(LRS))}]))) for k in order)
    gradient = GradientSpec("manual", when=draw(st.sampled_from(["once", "every_step"]))) if manual else \
        GradientSpec("objective", objective="quadratic", condition=draw(st.sampled_from([1.0, 10.0])))
    return SessionSpec(optimizer=optimizer, hparams={"lr": draw(st.sampled_from(LRS))}, tensors=ts, groups=groups,
                       gradient=gradient, seed=draw(st.integers(0, 1000)), set_to_none=draw(st.booleans()),
                       zero_grad_each_step=draw(st.booleans()), scheduler=draw(st.sampled_from(SCHEDULERS)))


@st.composite
def actions(draw, spec: SessionSpec):
    names = [t.name for t in spec.tensors] + ["a0", "a1"]
    manual = spec.gradient.kind == "manual"
    kind = draw(st.sampled_from(["step", "step", "zero_grad", "set_grad", "set_hparam", "add_group", "reset"]))
    if kind == "step":
        return Step(draw(st.integers(1, 3)))
    if kind == "zero_grad":
        return ZeroGrad(draw(st.sampled_from([None, True, False])))
    if kind == "set_grad":
        grad = draw(st.sampled_from([None, ManualGrad("normal", std=0.3, sparse=spec.optimizer == "SparseAdam")]))
        return SetGrad(draw(st.sampled_from(names)), grad)
    if kind == "set_hparam":
        return SetHparam(draw(st.integers(0, 3)), "lr", draw(st.sampled_from(LRS)))
    if kind == "add_group":
        name = draw(st.sampled_from(["a0", "a1"]))
        return AddGroup((draw(tensors(name, spec.optimizer, manual)),), {"lr": draw(st.sampled_from(LRS))})
    return Reset()


@st.composite
def sessions(draw):
    spec = draw(specs())
    return spec, draw(st.lists(actions(spec), max_size=6))


def build(spec, journal) -> Session:
    """The session a user gets by doing ``journal`` in the app (refused actions are not recorded)."""
    s = Session(spec)
    for a in journal:
        try:
            s.apply(a)
        except SpecError:
            continue
        except (StepError, NonFinite):  # a failed step is not recorded but did run: not a session to save
            reject()
    return s


@settings(max_examples=100, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(sessions())
def test_every_saved_session_reopens_equal_as_optimlab_and_as_json(case):
    spec, journal = case
    s = build(spec, journal)
    with tempfile.TemporaryDirectory() as folder:
        reopened = []
        for name in ("run.optimlab", "run.json"):
            path = Path(folder) / name
            session_file.save_session(s, path)
            r = session_file.load_session(path)
            assert_same_session(s, r)
            assert r.group_specs == s.group_specs and r.tensor_specs == s.tensor_specs
            reopened.append(r)
    outcomes = []
    for r in [s] + reopened:  # and they go on alike (or are refused alike: OneCycleLR after add_group)
        try:
            r.step(1)
            outcomes.append("stepped")
        except (StepError, NonFinite) as e:
            outcomes.append(str(e))
    assert outcomes[1:] == outcomes[:1] * 2
    for r in reopened:
        assert_same_session(s, r)
