"""The optimizer catalogue is read from torch, and bad values get torch's own sentence."""
import inspect

import pytest
import torch

from core import catalogue
from core.hparams import BOOL, CHOICE, FLOAT, INT, OPT_BOOL, TUPLE
from core.session import Session
from core.spec import GradientSpec, GroupSpec, SessionSpec, SpecError, TensorSpec

EXPECTED = {"ASGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "LBFGS", "Muon",
            "NAdam", "RAdam", "RMSprop", "Rprop", "SGD", "SparseAdam"}


def test_every_torch_optimizer_is_found_at_run_time(monkeypatch):
    assert set(catalogue.optimizer_classes()) == EXPECTED  # torch 2.13's fifteen, nothing else

    class Lion(torch.optim.Optimizer):  # an optimizer a newer torch might ship
        def __init__(self, params, lr: float = 1e-4):
            super().__init__(params, {"lr": lr})

    monkeypatch.setattr(torch.optim, "Lion", Lion, raising=False)
    found = catalogue.optimizer_classes()
    assert found["Lion"] is Lion and set(found) == EXPECTED | {"Lion"}
    assert "Optimizer" not in found and "StepLR" not in found  # the base class and schedulers are not offered


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hyperparameters_and_defaults_come_from_torch(name):
    info = catalogue.info(name)
    sig = inspect.signature(getattr(torch.optim, name).__init__)
    expected = {p.name: p.default for p in sig.parameters.values() if p.name not in ("self", "params")}
    assert {h.name: h.default for h in info.hparams} == expected
    assert info.summary and info.hparam("lr") is not None
    assert info.hparam("lr").doc, "each form field gets torch's description as a tooltip"
    # the defaults torch itself would put in param_groups
    opt = getattr(torch.optim, name)([torch.zeros(2, 2, requires_grad=True)])
    for h in info.hparams:
        if h.name in opt.defaults and h.default is not None:
            assert opt.defaults[h.name] == h.default


def test_kinds_fit_the_values():
    sgd, adam, lbfgs, muon = (catalogue.info(n) for n in ("SGD", "Adam", "LBFGS", "Muon"))
    assert sgd.hparam("lr").kind == FLOAT and sgd.hparam("nesterov").kind == BOOL
    assert sgd.hparam("foreach").kind == OPT_BOOL and sgd.hparam("foreach").advanced
    assert adam.hparam("betas").kind == TUPLE and adam.hparam("betas").length == 2
    assert lbfgs.hparam("max_iter").kind == INT
    assert lbfgs.hparam("line_search_fn").kind == CHOICE
    assert lbfgs.hparam("line_search_fn").choices == (None, "strong_wolfe")
    assert set(muon.hparam("adjust_lr_fn").choices) == {None, "original", "match_rms_adamw"}


@pytest.mark.parametrize("name, hp, message", [
    ("SGD", {"lr": -1.0}, "Invalid learning rate: -1.0"),
    ("Adam", {"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
    ("Adam", {"betas": (0.9, -0.1)}, "Invalid beta parameter at index 1"),
    ("SGD", {"nesterov": True}, "Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", {"bogus": 1}, "SGD has no hyperparameter 'bogus'"),
    ("Adam", {"betas": (0.9,)}, "betas must be a tuple of 2 numbers"),
    ("LBFGS", {"line_search_fn": "wolfe"}, "line_search_fn must be one of"),
])
def test_invalid_values_get_torchs_message(name, hp, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        catalogue.validate_hparams(name, hp)


def test_form_text_parses_like_python():
    adam = catalogue.info("Adam")
    assert adam.hparam("betas").parse("(0.8, 0.9)") == (0.8, 0.9)
    assert adam.hparam("lr").parse("1e-2") == 0.01
    assert adam.hparam("amsgrad").parse("true") is True
    with pytest.raises(ValueError, match="must be a number"):
        adam.hparam("lr").parse("fast")


def test_constraints_are_explained_in_one_sentence():
    with pytest.raises(SpecError, match="Muon optimizes only 2-D tensors"):
        Session(SessionSpec(optimizer="Muon", tensors=[TensorSpec("v", (3,))]))
    with pytest.raises(SpecError, match="LBFGS does not support parameter groups"):
        Session(SessionSpec(optimizer="LBFGS", tensors=[TensorSpec("a", (2,)), TensorSpec("b", (2,))],
                            groups=[GroupSpec(("a",)), GroupSpec(("b",))]))
    s = Session(SessionSpec(optimizer="SparseAdam", tensors=[TensorSpec("e", (3, 2))],
                            gradient=GradientSpec("objective", objective="quadratic")))
    with pytest.raises(Exception, match="SparseAdam needs sparse gradients"):
        s.step()
    assert s.step_count == 0


def test_lbfgs_gets_a_closure_from_the_engine():
    s = Session(SessionSpec(optimizer="LBFGS", tensors=[TensorSpec("xy", (2,), init="values", values=[-1.0, 1.0])],
                            gradient=GradientSpec("objective", objective="rosenbrock")))
    s.step(5)
    assert s.optimizer.state[s.params["xy"]]["func_evals"] > 5
    assert s.loss_value() is not None


def test_devices_are_the_ones_torch_reports(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert catalogue.devices() == ["cpu"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert catalogue.devices() == ["cpu", "cuda:0", "cuda:1"]
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert catalogue.devices() == ["cpu", "cuda:0", "cuda:1", "mps"]


def test_a_device_torch_does_not_report_is_refused_in_one_sentence():
    with pytest.raises(SpecError, match="Device 'cuda:7' is not available here: torch reports no CUDA GPU"):
        Session(SessionSpec(tensors=[TensorSpec("w", (2,))], device="cuda:7"))
