"""SchedulerForm: choose an lr scheduler, edit its parameters, get SchedulerSpecs out."""
import pytest
import torch

from core import schedulers
from core.spec import SchedulerSpec
from widgets.scheduler_form import NONE, SchedulerForm
from tests.widgets.keys import type_into


def validator(name, params):
    """torch's own checks on a plain SGD optimizer, plus a rule on gamma as torch lacks one."""
    if params.get("gamma", 1) < 0:
        return f"Invalid gamma: {params['gamma']} (must be >= 0)"
    opt = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1, momentum=0.9)
    return schedulers.validate_scheduler(name, params, opt)


@pytest.fixture
def form(qtbot):
    w = SchedulerForm()
    qtbot.addWidget(w)
    w.setSchedulers(schedulers.catalogue(), schedulers.skipped())
    w.setRequiredFiller(schedulers.with_required)
    w.setValidator(validator)
    w.resize(360, 600)
    w.show()
    qtbot.waitExposed(w)
    return w


def test_offers_none_and_the_catalogue_with_skipped_in_tooltip(form):
    items = [form.combo.itemText(i) for i in range(form.combo.count())]
    assert items[0] == NONE
    assert "StepLR" in items and "OneCycleLR" in items
    assert "LambdaLR" not in items
    assert "LambdaLR" in form.combo.toolTip()
    assert form.scheduler() is None
    assert not form.form.isVisible()


def test_choosing_steplr_emits_required_step_size(form, qtbot):
    with qtbot.waitSignal(form.schedulerEdited) as sig:
        form.combo.setCurrentText("StepLR")
    step = schedulers.with_required("StepLR", {})["step_size"]
    assert sig.args[0] == SchedulerSpec("StepLR", {"step_size": step}, "epoch")
    assert form.form.isVisible()
    assert form.form.editor("step_size").text() == str(step)


def test_editing_gamma_emits_it(form, qtbot):
    form.combo.setCurrentText("StepLR")
    with qtbot.waitSignal(form.schedulerEdited) as sig:
        type_into(qtbot, form.form.editor("gamma"), "0.5")
    assert sig.args[0] == SchedulerSpec("StepLR", {"step_size": 10, "gamma": 0.5}, "epoch")


def test_invalid_value_shows_message_and_emits_nothing(form, qtbot):
    form.combo.setCurrentText("StepLR")
    before = form.scheduler()
    with qtbot.assertNotEmitted(form.schedulerEdited):
        type_into(qtbot, form.form.editor("gamma"), "-1")
    assert "Invalid gamma" in form.errorText()
    assert form.scheduler() == before


def test_torch_refusal_on_choosing_shows_message(form, qtbot):
    with qtbot.assertNotEmitted(form.schedulerEdited):
        form.combo.setCurrentText("OneCycleLR")  # no total_steps yet
    assert "total_steps" in form.errorText()
    assert form.every.currentData() == "step"  # OneCycleLR is meant to step every batch
    with qtbot.waitSignal(form.schedulerEdited) as sig:
        type_into(qtbot, form.form.editor("total_steps"), "100")
    assert sig.args[0] == SchedulerSpec("OneCycleLR", {"max_lr": 0.01, "total_steps": 100}, "step")
    assert form.errorText() == ""


def test_every_combo_emits(form, qtbot):
    form.combo.setCurrentText("StepLR")
    with qtbot.waitSignal(form.schedulerEdited) as sig:
        form.every.setCurrentIndex(form.every.findData("step"))
    assert sig.args[0].every == "step"


def test_choosing_none_emits_none(form, qtbot):
    form.setScheduler(SchedulerSpec("StepLR", {"step_size": 3}))
    with qtbot.waitSignal(form.schedulerEdited) as sig:
        form.combo.setCurrentText(NONE)
    assert sig.args[0] is None
    assert not form.form.isVisible()


@pytest.mark.parametrize("spec", [None, SchedulerSpec("StepLR", {"step_size": 3, "gamma": 0.5}, "step"),
                                  SchedulerSpec("CosineAnnealingLR", {"T_max": 50})])
def test_set_scheduler_round_trips_without_emitting(form, qtbot, spec):
    with qtbot.assertNotEmitted(form.schedulerEdited):
        form.setScheduler(spec)
    assert form.scheduler() == spec
    assert form.combo.currentText() == (spec.name if spec else NONE)
    if spec is not None:
        assert form.every.currentData() == spec.every
        for k, v in spec.params.items():
            assert form.form.values()[k] == v


def test_edit_after_set_scheduler_keeps_given_params(form, qtbot):
    form.setScheduler(SchedulerSpec("StepLR", {"step_size": 3}))
    with qtbot.waitSignal(form.schedulerEdited) as sig:
        type_into(qtbot, form.form.editor("gamma"), "0.25")
    assert sig.args[0] == SchedulerSpec("StepLR", {"step_size": 3, "gamma": 0.25}, "epoch")


def test_locked_form_is_disabled(form):
    form.setLocked(True)
    assert form.isLocked()
    assert not form.combo.isEnabled()
    form.setLocked(False)
    assert form.combo.isEnabled()
