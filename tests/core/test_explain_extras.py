"""Explain one update beyond torch.optim: Lion and schedule-free AdamW (each in two
collections) and Prodigy, recomputed at one element from their step's own rule, agree
with what the optimizer did; other extras and unwritten options are refused in one
sentence."""
import re

import pytest

from core import explain as explain_module
from core import explain_extras, session_file
from core.cli import main
from core.explain import explain, render
from core.session import Session
from core.spec import AddGroup, GradientSpec, ManualGrad, SessionSpec, SetHparam, SpecError, Step, TensorSpec, ZeroGrad

for _module in ("pytorch_optimizer", "lion_pytorch", "schedulefree", "prodigyopt"):
    pytest.importorskip(_module)  # pyproject's [extras]; .ci/run installs them

ELEMENTS = [(0, 0), (4, 6)]


def session(optimizer, hparams, steps=3, dtype="float32"):
    """Two tensors: Prodigy's d sums over both."""
    spec = SessionSpec(optimizer=optimizer, hparams=hparams, seed=4,
                       tensors=(TensorSpec("w", (5, 7), dtype=dtype, init="normal"),
                                TensorSpec("b", (3,), dtype=dtype, init="normal")),
                       gradient=GradientSpec(kind="objective", objective="rastrigin"), zero_grad_each_step=True)
    return Session(spec, [Step(steps)])


SETTINGS = [
    ("lion_pytorch.Lion", {"lr": 0.01}),
    ("lion_pytorch.Lion", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("pytorch_optimizer.Lion", {"lr": 0.01, "weight_decay": 0.1}),  # foreach on CPU by default
    ("pytorch_optimizer.Lion", {"lr": 0.01, "weight_decay": 0.1, "weight_decouple": False, "maximize": True,
                                "foreach": False}),
    ("pytorch_optimizer.Lion", {"lr": 0.01, "weight_decay": 0.1, "fixed_decay": True, "foreach": False}),
    ("schedulefree.AdamWScheduleFree", {"lr": 0.01, "weight_decay": 0.1, "warmup_steps": 2}),
    ("schedulefree.AdamWScheduleFree", {"lr": 0.01, "r": 1.0, "weight_lr_power": 1.0, "foreach": False}),
    ("pytorch_optimizer.ScheduleFreeAdamW", {"lr": 0.01, "ams_bound": True, "weight_decay": 0.1, "r": 1.0}),
    ("pytorch_optimizer.ScheduleFreeAdamW", {"lr": 0.01, "decoupling_c": 5, "maximize": True, "warmup_steps": 2,
                                             "foreach": False}),
    ("prodigyopt.Prodigy", {}),
    ("prodigyopt.Prodigy", {"weight_decay": 0.1, "use_bias_correction": True, "decouple": False,
                            "safeguard_warmup": True, "betas": (0.0, 0.99)}),
]


def assert_agrees(e):
    assert not e.mismatch and e.ulps <= e.tolerance, render(e)
    compared = [t for t in e.terms if t.ulps is not None]
    assert any(t.name.startswith("theta_t") for t in compared) and len(compared) >= 2, render(e)


@pytest.mark.parametrize("optimizer,hparams", SETTINGS, ids=[f"{o}-{'-'.join(h) or 'defaults'}" for o, h in SETTINGS])
def test_an_extras_formula_agrees_with_what_it_did(optimizer, hparams):
    s = session(optimizer, hparams)
    for step in (1, 3):  # the first step starts the state; the third uses it
        for idx in ELEMENTS:
            e = explain(s, "w", idx, step=step)
            assert (e.optimizer, e.step, e.index) == (optimizer, step, idx)
            assert e.tolerance == (0 if e.implementation == "for-loop" else 2)
            assert_agrees(e)
    assert_agrees(explain(s, "b", (1,), step=2))


@pytest.mark.parametrize("optimizer", ["lion_pytorch.Lion", "prodigyopt.Prodigy"])
def test_an_extra_agrees_in_float64(optimizer):
    e = explain(session(optimizer, {"lr": 0.01} if "Lion" in optimizer else {}, dtype="float64"), "w", (1, 2))
    assert e.dtype == "float64" and e.ulps == 0
    assert_agrees(e)


def test_schedule_free_parameter_holds_y_and_eval_moves_it_to_the_x_shown():
    s = session("schedulefree.AdamWScheduleFree", {"lr": 0.05, "warmup_steps": 3}, steps=4)
    e = explain(s, "w", (2, 3))
    terms = {t.name: t for t in e.terms}
    assert terms["theta_t = y_t"].torch == float(s.params["w"].detach()[2, 3])  # train mode: the parameter is y
    at_2 = {t.name: t.value for t in explain(s, "w", (2, 3), step=2).terms}
    assert (terms["warmup"].value, at_2["warmup"], at_2["lr_t"]) == (1.0, 2 / 3, 0.05 * 2 / 3)
    s.optimizer.eval()  # what the window does around an evaluation: the parameter becomes x
    assert terms["x_t"].value_dtype == float(s.params["w"].detach()[2, 3])
    assert terms["t"].torch == 4 == s.optimizer.param_groups[0]["k"]


def test_prodigy_shows_the_whole_models_d_at_the_step():
    s = session("prodigyopt.Prodigy", {}, steps=4)
    d = []
    for step in range(1, 5):
        terms = {t.name: t for t in explain(s, "w", (3, 3), step=step).terms}
        assert terms["d_t"].ulps == 0 and terms["d_denom"].ulps == 0 and terms["d_numerator"].ulps == 0
        d.append(terms["d_t"].value_dtype)
    assert d[0] == 1e-6 < d[-1] == s.optimizer.param_groups[0]["d"]  # d0 at first (theta = theta_0), then grows
    assert {t.name: t.value_dtype for t in explain(s, "b", (1,), step=4).terms}["d_t"] == d[-1]  # one d for all


def test_prodigy_sums_over_every_group_each_with_its_own_decay():
    spec = SessionSpec(optimizer="prodigyopt.Prodigy", seed=4, gradient=GradientSpec(kind="manual", when="every_step"),
                       tensors=(TensorSpec("w", (5, 7), init="normal", grad=ManualGrad(fill="normal")),))
    s = Session(spec, [Step(2)])
    s.apply(AddGroup((TensorSpec("v", (2, 2), init="normal", grad=ManualGrad(fill="normal")),),
                     {"weight_decay": 0.1, "eps": 1e-4}))
    s.apply(Step(2))
    on_w, on_v = explain(s, "w", (1, 1)), explain(s, "v", (1, 0))
    assert (on_w.group, on_v.group) == (0, 1)
    for e in (on_w, on_v):
        assert_agrees(e)
    d = [{t.name: t.torch for t in e.terms}["d_t"] for e in (on_w, on_v)]
    assert d[0] == d[1] == s.optimizer.param_groups[1]["d"]
    assert any(t.name == "theta (decayed)" for t in on_v.terms) and not any(t.name == "theta (decayed)"
                                                                             for t in on_w.terms)


@pytest.mark.parametrize("optimizer,lr,key", [("schedulefree.AdamWScheduleFree", 0.01, "lr_max"),
                                               ("prodigyopt.Prodigy", 1.0, "d_t")])
def test_a_fork_after_a_rewind_is_explained_at_its_own_steps(optimizer, lr, key):
    s = session(optimizer, {"lr": lr}, steps=5)
    s.goto(2)
    s.apply(ZeroGrad())
    s.apply(SetHparam(0, "lr", 0.2))
    s.step(3)  # a new branch from step 2: what the group keeps (k, weight_sum, lr_max; d) comes back with the rewind
    on_fork, on_root = explain(s, "w", (1, 1), step=4), explain(s, "w", (1, 1), step=4, branch=0)
    assert (on_fork.branch, on_fork.hparams["lr"], on_root.hparams["lr"]) == (1, 0.2, lr)
    for e in (on_fork, on_root):
        assert_agrees(e)
    fork, root = ({t.name: t.torch for t in e.terms}[key] for e in (on_fork, on_root))
    assert fork != root
    if key == "lr_max":
        assert fork == 0.2


@pytest.mark.parametrize("optimizer,term", [("prodigyopt.Prodigy", "d_hat"), ("lion_pytorch.Lion", "m_t"),
                                            ("schedulefree.AdamWScheduleFree", "z_t")])
def test_a_wrong_extra_formula_is_caught(monkeypatch, optimizer, term):
    real = explain_extras.RULES[optimizer]

    def wrong(r):  # Prodigy's d_coef (read from the first group), or Lion's and schedule-free's beta2, a bit off
        if "Prodigy" in optimizer:
            r.context = {**r.context, "groups": [{**g, "d_coef": 1.01} for g in r.context["groups"]]}
        else:
            r.h = {**r.h, "betas": (r.h["betas"][0], r.h["betas"][1] - 0.001)}
        real(r)
    monkeypatch.setitem(explain_module.RULES, optimizer, wrong)
    e = explain(session(optimizer, {"lr": 0.01} if "Prodigy" not in optimizer else {}), "w", (1, 1))
    assert e.mismatch and "MISMATCH" in render(e)
    assert next(t.ulps for t in e.terms if t.name == term) > 0


def test_other_extras_are_refused_naming_those_explained():
    for name in ("pytorch_optimizer.Adan", "pytorch_optimizer.Prodigy"):  # the latter: a Prodigy of its own
        s = session(name, {}, steps=1)
        with pytest.raises(SpecError, match=rf"^{name} cannot be explained: .*torch.optim's.* lion_pytorch.Lion, "
                                            r"pytorch_optimizer.Lion, schedulefree.AdamWScheduleFree, "
                                            r"pytorch_optimizer.ScheduleFreeAdamW and prodigyopt.Prodigy$"):
            explain(s, "w", (0, 0))


@pytest.mark.parametrize("option", ["use_gc", "adanorm", "cautious"])
def test_a_lion_variant_not_written_out_is_refused_naming_the_option(option):
    s = session("pytorch_optimizer.Lion", {"lr": 0.01}, steps=1)
    s.optimizer.param_groups[0][option] = True  # as a loaded optimizer file's groups can carry it
    reason = explain_extras.refusal("pytorch_optimizer.Lion", s.optimizer, s.optimizer.param_groups[0])
    assert reason.startswith(f"pytorch_optimizer.Lion cannot be explained with {option} on (")
    assert explain_extras.refusal("pytorch_optimizer.Lion", s.optimizer, {"lr": 0.01, option: False}) is None


@pytest.mark.parametrize("optimizer,hparams,last_term", [
    ("prodigyopt.Prodigy", {"weight_decay": 0.01}, "theta_t"), ("lion_pytorch.Lion", {"lr": 0.01}, "m_t"),
    ("schedulefree.AdamWScheduleFree", {"lr": 0.01}, "x_t")])
def test_cli_explains_an_extra_and_ends_with_the_summary_line(tmp_path, capsys, optimizer, hparams, last_term):
    path = tmp_path / "extra.optimlab"
    session_file.save_session(session(optimizer, hparams), path)
    capsys.readouterr()
    assert main(["explain", str(path), "--tensor", "w", "--index", "2,3", "--step", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()  # prodigyopt's own print, if any, goes to stderr
    assert lines[0].startswith(f"{optimizer}, step 2 of branch 0: w[2,3]")
    assert lines[1].startswith(f"{optimizer}: the rule of")
    names = [line.split()[0] for line in lines[5:] if line.startswith("  ")]
    assert names[-1] == last_term and "theta_t" in " ".join(names)
    assert re.fullmatch(r"torch: -?\d\.\d+e?-?\d*  formula: -?\d\.\d+e?-?\d*  diff: 0 ulp", lines[-1]), lines[-1]
