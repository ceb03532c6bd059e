"""LR schedulers: described from torch, built safely, stepped exactly as a plain loop steps them."""
import io

import pytest
import torch
from torch.optim import lr_scheduler

from core import schedulers
from core.hparams import CHOICE, INT, TUPLE

MUST_HAVE = ["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "OneCycleLR", "LinearLR",
             "ReduceLROnPlateau"]
# what a user would type besides the form's starting values
EXTRA = {"OneCycleLR": {"total_steps": 40, "max_lr": 0.5}, "CyclicLR": {"step_size_up": 4},
         "StepLR": {"step_size": 3}, "MultiStepLR": {"milestones": (2.0, 5.0)}, "CosineAnnealingLR": {"T_max": 7},
         "CosineAnnealingWarmRestarts": {"T_0": 4, "T_mult": 2}, "ReduceLROnPlateau": {"patience": 1}}


def make_optimizer(cls=torch.optim.SGD, **kw):
    a = torch.zeros(3, requires_grad=True)
    b = torch.zeros(2, 2, requires_grad=True)
    kw = kw or {"lr": 0.1, "momentum": 0.9}
    return cls([{"params": [a]}, {"params": [b], "lr": 0.02}], **kw)


def params_for(name):
    return schedulers.with_required(name, EXTRA.get(name, {}))


def metric(step):
    return [1.0, 0.9, 0.95, 0.97, 0.99, 0.98, 0.5, 0.6, 0.7][step % 9]


def test_every_scheduler_class_is_described_or_skipped_with_a_reason():
    classes = set(schedulers.scheduler_classes())
    assert set(MUST_HAVE) <= set(schedulers.names())
    assert set(schedulers.names()) | set(schedulers.skipped()) == classes
    assert {"LambdaLR", "MultiplicativeLR", "SequentialLR", "ChainedScheduler"} <= set(schedulers.skipped())
    assert "lr_lambda" in schedulers.skipped()["LambdaLR"] and "schedulers" in schedulers.skipped()["SequentialLR"]
    with pytest.raises(ValueError, match="not described"):
        schedulers.info("LambdaLR")


@pytest.mark.parametrize("name", MUST_HAVE)
def test_required_schedulers_are_described_from_torch(name):
    desc = schedulers.info(name)
    names = {h.name for h in desc.hparams}
    assert not names & {"optimizer", "last_epoch", "verbose"}
    assert desc.summary
    if name == "StepLR":
        assert desc.hparam("step_size").kind == INT and desc.hparam("gamma").default == 0.1
        assert any("step_size" in c for c in desc.constraints)
    if name == "MultiStepLR":
        assert desc.hparam("milestones").kind == TUPLE
    if name == "ReduceLROnPlateau":
        assert desc.hparam("mode").kind == CHOICE and desc.hparam("mode").choices == ("min", "max")
        assert schedulers.needs_metric(name) and any("metric" in c for c in desc.constraints)
    if name == "OneCycleLR":
        assert desc.hparam("total_steps").optional and schedulers.default_every(name) == "step"


def test_callable_arguments_of_described_classes_are_left_out():
    assert schedulers.info("CyclicLR").hparam("scale_fn") is None
    assert "scale_fn" in schedulers.skipped_params("CyclicLR")


@pytest.mark.parametrize("name", schedulers.names())
def test_every_described_scheduler_builds_and_its_state_survives_weights_only(name):
    opt = make_optimizer()
    assert schedulers.validate_scheduler(name, params_for(name), opt) is None
    sched = schedulers.make_scheduler(name, params_for(name), opt)
    for i in range(5):
        opt.step()
        schedulers.step_scheduler(sched, metric(i))
    buf = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True, map_location="cpu")
    # resume in the usual order: build both, then load the optimizer's state, then the scheduler's
    opt2 = make_optimizer()
    sched2 = schedulers.make_scheduler(name, params_for(name), opt2)
    opt2.load_state_dict(saved["optimizer"])
    sched2.load_state_dict(saved["scheduler"])
    for i in range(5, 12):
        for o, s in ((opt, sched), (opt2, sched2)):
            o.step()
            schedulers.step_scheduler(s, metric(i))
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in opt2.param_groups]


@pytest.mark.parametrize("name", schedulers.names())
def test_helper_stepping_equals_plain_loop_lr_per_group_per_step(name):
    params = params_for(name)
    ours_opt = make_optimizer()
    ours = schedulers.make_scheduler(name, params, ours_opt)
    plain_opt = make_optimizer()
    plain_params = {k: ([int(x) for x in v] if k == "milestones" else v) for k, v in params.items()}
    plain = getattr(lr_scheduler, name)(plain_opt, **plain_params)
    ours_lrs, plain_lrs = [], []
    for i in range(25):
        ours_opt.step()
        schedulers.step_scheduler(ours, metric(i))
        plain_opt.step()
        if name == "ReduceLROnPlateau":
            plain.step(metric(i))
        else:
            plain.step()
        ours_lrs.append([g["lr"] for g in ours_opt.param_groups] + [g.get("momentum") for g in ours_opt.param_groups])
        plain_lrs.append([g["lr"] for g in plain_opt.param_groups] + [g.get("momentum") for g in plain_opt.param_groups])
    assert ours_lrs == plain_lrs
    assert len({tuple(r[:2]) for r in ours_lrs}) > 1  # the schedule did something


def test_reduce_on_plateau_lowers_lr_when_the_metric_stalls_and_needs_a_metric():
    opt = make_optimizer()
    sched = schedulers.make_scheduler("ReduceLROnPlateau", {"patience": 0, "factor": 0.5}, opt)
    for m in (1.0, 1.0, 1.0):
        schedulers.step_scheduler(sched, m)
    assert opt.param_groups[0]["lr"] == 0.1 * 0.5 * 0.5
    with pytest.raises(ValueError, match="metric"):
        schedulers.step_scheduler(sched)


def test_schedulers_work_with_adam_too():
    opt = make_optimizer(torch.optim.Adam, lr=0.01)
    sched = schedulers.make_scheduler("OneCycleLR", {"max_lr": 0.1, "total_steps": 10}, opt)
    assert opt.param_groups[0]["betas"][0] == 0.95  # cycle_momentum drives beta1
    opt.step()
    sched.step()
    assert schedulers.last_lrs(sched) == [g["lr"] for g in opt.param_groups]


@pytest.mark.parametrize("name, params, message", [
    ("OneCycleLR", {"max_lr": 0.1}, "total_steps"),
    ("ExponentialLR", {}, "gamma"),
    ("StepLR", {"step_size": 2, "gamma": "big"}, "gamma must be a number"),
    ("StepLR", {"step_size": 2, "momentum": 0.5}, "StepLR has no parameter 'momentum'"),
    ("LinearLR", {"start_factor": 2.0}, "Starting multiplicative factor expected to be greater than 0"),
    ("ReduceLROnPlateau", {"mode": "sideways"}, "mode must be one of"),
    ("OneCycleLR", {"max_lr": [0.1, 0.2, 0.3], "total_steps": 5}, "max_lr must be a number"),
    ("CyclicLR", {"base_lr": 0.001, "max_lr": 0.01}, None),
    ("OneCycleLR", {"max_lr": [0.1, 0.2], "total_steps": 5}, None),
])
def test_validate_returns_torchs_message_and_leaves_the_optimizer_alone(name, params, message):
    opt = make_optimizer()
    before = [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups]
    problem = schedulers.validate_scheduler(name, params, opt)
    if message is None:
        assert problem is None
    else:
        assert problem is not None and message in problem
        with pytest.raises(ValueError):
            schedulers.make_scheduler(name, params, opt)
    assert [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups] == before


def test_milestones_typed_as_floats_in_a_form_become_ints():
    opt = make_optimizer()
    sched = schedulers.make_scheduler("MultiStepLR", {"milestones": (2.0, 4.0)}, opt)
    assert all(type(m) is int for m in sched.milestones)


def test_stepping_interval():
    assert schedulers.should_step("step", False) and schedulers.should_step("epoch", True)
    assert not schedulers.should_step("epoch", False)
    assert schedulers.default_every("StepLR") == "epoch" and schedulers.default_every("CyclicLR") == "step"
    with pytest.raises(ValueError, match="Invalid scheduler interval"):
        schedulers.should_step("batch", True)


def test_a_scheduler_that_cannot_take_an_added_group_says_so_in_one_sentence():
    """Found by a random search over sessions: CosineAnnealingLR keeps one base lr per group from
    when it was made; after add_param_group torch's step fails with "zip() argument 2 is longer than
    argument 1" at step T_max + 1. The run stops with a sentence that says why."""
    from core.session import Session, StepError
    from core.spec import AddGroup, GradientSpec, ManualGrad, SchedulerSpec, SessionSpec, Step, TensorSpec
    s = Session(SessionSpec(optimizer="Adam", scheduler=SchedulerSpec("CosineAnnealingLR", {"T_max": 7}, "step"),
                            tensors=(TensorSpec("w", (2,), grad=ManualGrad("normal")),),
                            gradient=GradientSpec("manual", when="every_step")), [Step(2)])
    s.apply(AddGroup((TensorSpec("g", (2,), grad=ManualGrad("normal")),), {"lr": 0.01}))
    with pytest.raises(StepError) as e:
        s.apply(Step(10))  # its closed form at step T_max + 1 zips base_lrs with the groups, strictly
    assert "made for 1 parameter group and the optimizer now has 2" in str(e.value)
    assert "add_param_group" in str(e.value) and "\n" not in str(e.value)
