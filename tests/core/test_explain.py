"""Explain one update: every optimizer's formula, recomputed at one element, agrees with the
change torch made (to the documented tolerance), a wrong formula is caught, and explaining
moves nothing."""
import re
from dataclasses import replace

import pytest
import torch

from core import explain_rules
from core.cli import main
from core.explain import TOLERANCE, explain, render, ulp_distance
from core.session import Session
from core.spec import (EditTensor, GradientSpec, ManualGrad, SessionSpec, SetHparam, SpecError, Step, TensorSpec,
                       ZeroGrad)
from core.task_spec import TaskSpec

ELEMENTS = [(0, 0), (2, 3), (4, 6)]


def objective_session(optimizer, hparams, steps=3, dtype="float32", objective="rastrigin", shape=(5, 7)):
    spec = SessionSpec(optimizer=optimizer, hparams=hparams, seed=4,
                       tensors=(TensorSpec("w", shape, dtype=dtype, init="normal"),),
                       gradient=GradientSpec(kind="objective", objective=objective), zero_grad_each_step=True)
    return Session(spec, [Step(steps)])


SETTINGS = [
    ("SGD", {"lr": 0.01}), ("SGD", {"lr": 0.01, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.05}),
    ("SGD", {"lr": 0.01, "momentum": 0.9, "nesterov": True, "maximize": True}),
    ("SGD", {"lr": 0.01, "momentum": 0.9, "foreach": True}), ("SGD", {"lr": 0.01, "momentum": 0.9, "fused": True}),
    ("Adam", {"lr": 0.01}), ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "foreach": True}), ("Adam", {"lr": 0.01, "foreach": False}),
    ("Adam", {"lr": 0.01, "fused": True}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}), ("AdamW", {"lr": 0.01, "amsgrad": True, "foreach": True}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.1, "initial_accumulator_value": 0.5}),
    ("Adagrad", {"lr": 0.1, "foreach": True, "maximize": True}),
    ("Adadelta", {"weight_decay": 0.1}), ("Adadelta", {"foreach": True, "maximize": True}),
    ("Adamax", {"weight_decay": 0.1}), ("Adamax", {"foreach": True}),
    ("ASGD", {"t0": 1, "weight_decay": 0.1}), ("ASGD", {"t0": 1, "foreach": True}),
    ("NAdam", {"weight_decay": 0.1}), ("NAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True, "foreach": True}),
    ("RAdam", {"weight_decay": 0.1}), ("RAdam", {"decoupled_weight_decay": True, "weight_decay": 0.1, "foreach": True}),
    ("RMSprop", {"lr": 0.01}), ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5, "foreach": True}),
    ("Rprop", {"lr": 0.01}), ("Rprop", {"lr": 0.01, "foreach": True, "maximize": True}),
    ("Adafactor", {}), ("Adafactor", {"weight_decay": 0.1, "eps": (1e-30, 1e-3), "foreach": True}),
    ("Muon", {"lr": 0.02}), ("Muon", {"lr": 0.02, "nesterov": False, "adjust_lr_fn": "match_rms_adamw"}),
    ("LBFGS", {"lr": 0.5, "max_iter": 5}), ("LBFGS", {"line_search_fn": "strong_wolfe", "max_iter": 6}),
]


def assert_agrees(e):
    tol = TOLERANCE[e.implementation]
    assert e.ulps <= tol, render(e)
    for t in e.terms:
        assert t.ulps is None or t.ulps <= tol, render(e)
    assert not e.mismatch
    assert any(t.name == "theta_t" and t.torch is not None for t in e.terms), render(e)


@pytest.mark.parametrize("optimizer,hparams", SETTINGS, ids=[f"{o}-{'-'.join(h) or 'defaults'}" for o, h in SETTINGS])
def test_formula_agrees_with_torch_for_every_optimizer(optimizer, hparams):
    s = objective_session(optimizer, hparams)
    for step in (1, 3):  # the first step starts the state; the third uses it
        for idx in ELEMENTS:
            e = explain(s, "w", idx, step=step)
            assert e.optimizer == optimizer and e.step == step and e.index == idx
            assert_agrees(e)


@pytest.mark.parametrize("optimizer", ["Adam", "SGD", "Adafactor", "Muon", "LBFGS", "Rprop"])
def test_formula_agrees_in_float64(optimizer):
    s = objective_session(optimizer, {"lr": 0.01} if optimizer != "LBFGS" else {}, dtype="float64")
    e = explain(s, "w", (1, 2))
    assert e.dtype == "float64"
    assert_agrees(e)


def test_a_vector_and_a_scalar_are_explained():
    e = explain(objective_session("Adafactor", {}, shape=(6,), objective="quadratic"), "w", (4,))
    assert_agrees(e)
    assert any(t.name == "V_hat" and t.torch is not None for t in e.terms)  # a vector keeps a full variance
    e = explain(objective_session("Adam", {"lr": 0.1}, shape=(), objective="quadratic"), "w", ())
    assert_agrees(e)


def test_sparse_adam_updates_only_the_gradients_entries():
    spec = SessionSpec(optimizer="SparseAdam", hparams={"lr": 0.01}, seed=3,
                       tensors=(TensorSpec("emb", (6, 4), grad=ManualGrad(fill="values", sparse=True, values=[
                           [0.5, 0, 0, 0], [0, 0, 0, 0], [0, -1.5, 0, 0], [0, 0, 0, 0], [0, 0, 0, 2.0], [0, 0, 0, 0]])),),
                       gradient=GradientSpec(kind="manual", when="every_step"))
    s = Session(spec, [Step(4)])
    hit = explain(s, "emb", (2, 1))
    assert_agrees(hit)
    assert hit.torch_change != 0
    miss = explain(s, "emb", (1, 1))
    assert_agrees(miss)
    assert miss.torch_change == 0 == miss.formula_change


def test_a_task_step_is_explained_on_its_own_batch():
    task = TaskSpec(kind="mlp", n_samples=64, hidden=(8,), batch_size=16, eval_every=5)
    spec = SessionSpec(optimizer="Adam", hparams={"lr": 0.01}, gradient=GradientSpec(kind="task", task=task),
                       zero_grad_each_step=True)
    s = Session(spec, [Step(7)])
    for step in (1, 5, 7):
        assert_agrees(explain(s, "fc1.weight", (3, 1), step=step))
    assert_agrees(explain(s, "out.bias", (0,), step=6))


def test_lbfgs_with_manual_gradients_every_step():
    spec = SessionSpec(optimizer="LBFGS", hparams={"max_iter": 4},
                       tensors=(TensorSpec("w", (3,), grad=ManualGrad(fill="normal")),),
                       gradient=GradientSpec(kind="manual", when="every_step"))
    e = explain(Session(spec, [Step(2)]), "w", (1,))
    assert_agrees(e)
    # the closure's loss is always 0 here, so L-BFGS stops after one iteration (no change in loss)
    assert [t.value_dtype for t in e.terms if t.name == "iterations"] == [1.0]


def test_edits_between_steps_are_in_the_explained_step():
    s = objective_session("SGD", {"lr": 0.1, "momentum": 0.9}, steps=2)
    s.apply(SetHparam(0, "lr", 0.5))
    s.apply(EditTensor("w", "momentum_buffer", (1, 1), 3.0))
    s.step(1)
    e = explain(s, "w", (1, 1))
    assert e.step == 3 and e.hparams["lr"] == 0.5
    assert next(t.value_dtype for t in e.terms if t.name == "b_{t-1}") == 3.0
    assert_agrees(e)
    assert explain(s, "w", (1, 1), step=2).hparams["lr"] == 0.1


def test_a_tensor_without_gradient_is_skipped_as_torch_skips_it():
    spec = SessionSpec(optimizer="Adam", tensors=(TensorSpec("a", (2,), grad=ManualGrad()), TensorSpec("b", (2,))))
    e = explain(Session(spec, [Step(2)]), "b", (0,))
    assert e.terms == () and e.torch_change == 0 and not e.mismatch
    assert "no gradient" in e.notes[0]


def test_other_branches_are_explained_at_their_own_steps():
    s = objective_session("Adam", {"lr": 0.01}, steps=5)
    s.goto(2)
    s.apply(ZeroGrad())
    s.apply(SetHparam(0, "lr", 0.2))
    s.step(3)  # a new branch, forked at step 2
    assert s.timeline.current == 1
    on_fork = explain(s, "w", (0, 0), step=4)
    on_root = explain(s, "w", (0, 0), step=4, branch=0)
    assert (on_fork.branch, on_fork.hparams["lr"]) == (1, 0.2)
    assert (on_root.branch, on_root.hparams["lr"]) == (0, 0.01)
    assert_agrees(on_fork)
    assert_agrees(on_root)


def test_explaining_moves_nothing():
    s = objective_session("Adam", {"lr": 0.01}, steps=6)
    s.goto(4)
    pos, params = s.position(), s.params["w"].detach().clone()
    state = {k: v.clone() for k, v in s.optimizer.state[s.params["w"]].items()}
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    undo = len(s._undo)
    explain(s, "w", (1, 1), step=6)
    explain(s, "w", (1, 1), step=2)
    assert s.position() == pos and torch.equal(s.params["w"], params)
    assert all(torch.equal(v, s.optimizer.state[s.params["w"]][k]) for k, v in state.items())
    assert torch.equal(torch.get_rng_state(), rng) and len(s._undo) == undo


def test_the_implementation_torch_chose_is_named():
    assert explain(objective_session("Adam", {}), "w", (0, 0)).implementation == "for-loop"  # CPU default
    assert explain(objective_session("Adam", {"foreach": True}), "w", (0, 0)).implementation == "foreach"
    assert explain(objective_session("AdamW", {"fused": True}), "w", (0, 0)).implementation == "fused"
    assert explain(objective_session("Adafactor", {}), "w", (0, 0)).implementation == "for-loop"


def test_a_wrong_formula_is_caught(monkeypatch, capsys):
    s = objective_session("Adam", {"lr": 0.01}, steps=3)
    monkeypatch.setattr(explain_rules, "bias_correction", lambda beta, t: 1 - beta ** (t + 1))
    e = explain(s, "w", (1, 1))
    assert e.mismatch and e.ulps > 0
    assert "MISMATCH" in render(e)


def test_a_wrong_state_term_is_caught_even_when_the_parameter_agrees(monkeypatch):
    s = objective_session("SGD", {"lr": 0.0, "momentum": 0.9}, steps=3)  # lr 0: the parameter never moves
    real = explain_rules.sgd

    def wrong(r):  # a buffer with the wrong momentum
        r.h = {**r.h, "momentum": 0.8}
        real(r)
    monkeypatch.setitem(explain_rules.RULES, "SGD", wrong)
    monkeypatch.setattr("core.explain.RULES", {**explain_rules.RULES, "SGD": wrong})
    e = explain(s, "w", (1, 1))
    assert e.ulps == 0 and e.mismatch
    assert next(t.ulps for t in e.terms if t.name == "b_t") > 0


def test_ulp_distance_counts_representable_numbers():
    one = 1.0
    after = torch.nextafter(torch.tensor(one), torch.tensor(2.0)).item()
    assert ulp_distance(one, after, torch.float32) == 1
    assert ulp_distance(-0.0, 0.0, torch.float32) == 0
    assert ulp_distance(-1e-45, 1e-45, torch.float32) == 2  # the two smallest subnormals, across zero
    assert ulp_distance(1.0, 1.0 + 3 * 2 ** -52, torch.float64) == 3
    assert ulp_distance(float("nan"), 1.0, torch.float32) > 10 ** 9


def test_bad_requests_are_refused_in_one_sentence():
    s = objective_session("Adam", {}, steps=2)
    for kwargs, words in [({"tensor": "v"}, "no tensor 'v'"), ({"index": (0,)}, "Index [0] is not an element"),
                          ({"index": (5, 0)}, "Index [5, 0]"), ({"step": 3}, "no update at step 3"),
                          ({"step": 0}, "no update at step 0"), ({"branch": 4}, "no branch 4")]:
        args = {"tensor": "w", "index": (0, 0), **kwargs}
        with pytest.raises(SpecError, match=re.escape(words)):
            explain(s, args.pop("tensor"), **args)
    fresh = objective_session("Adam", {}, steps=0)
    with pytest.raises(SpecError, match="taken no step yet"):
        explain(fresh, "w", (0, 0))


def test_cli_prints_the_terms_and_ends_with_the_summary_line(capsys):
    code = main(["explain", "seed_walkthrough", "--tensor", "weight", "--index", "1,0", "--step", "2"])
    out, err = capsys.readouterr()
    assert code == 0 and not err
    lines = out.strip().splitlines()
    assert lines[0].startswith("SGD, step 2 of branch 0: weight[1,0] (float32, cpu), for-loop implementation")
    assert any(line.split()[:1] == ["b_t"] for line in lines)
    # step 2: g = 0, the buffer 0.9*1, so the weight moves by lr*0.9 = 0.09 (in float32)
    assert re.fullmatch(r"torch: -0\.090000\d*  formula: -0\.090000\d*  diff: 0 ulp", lines[-1]), lines[-1]


def test_cli_exits_1_on_a_mismatch_and_2_on_bad_input(capsys, monkeypatch):
    assert main(["explain", "seed_walkthrough", "--tensor", "weight", "--index", "1,x"]) == 2
    assert "--index must be whole numbers" in capsys.readouterr().err
    assert main(["explain", "seed_walkthrough", "--tensor", "nope", "--index", "0"]) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "no tensor 'nope'" in err
    monkeypatch.setattr(explain_rules, "bias_correction", lambda beta, t: 0.5)
    assert main(["explain", "adam_rosenbrock", "--tensor", "xy", "--index", "0", "--step", "3"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_muons_in_place_normalised_buffer_in_bfloat16_is_flagged_and_explained():
    """Found by a random search over settings: torch 2.13's Muon normalises its momentum buffer
    in place for bfloat16 parameters without nesterov (pytorch/pytorch#194664). The explanation
    flags torch's buffer against the documented algorithm, and says why; with nesterov it agrees."""
    from core.torch_issues import muon_aliases_bf16_buffer
    if not muon_aliases_bf16_buffer():
        pytest.skip("this torch copies the buffer before orthogonalising it (fixed upstream)")
    e = explain(objective_session("Muon", {"lr": 0.02, "nesterov": False}, steps=1, dtype="bfloat16"), "w", (0, 0))
    assert e.mismatch and any("pytorch/pytorch#194664" in n for n in e.notes)
    buf = next(t for t in e.terms if t.name == "B_t")
    assert buf.ulps is not None and buf.ulps > TOLERANCE[e.implementation]
    fine = explain(objective_session("Muon", {"lr": 0.02, "nesterov": True}, steps=1, dtype="bfloat16"), "w", (0, 0))
    assert not fine.mismatch and not any("194664" in n for n in fine.notes)


@pytest.mark.parametrize("optimizer,hparams,shape,objective,index", [
    ("RAdam", {"lr": 0.01, "weight_decay": 0.01, "decoupled_weight_decay": True, "foreach": True}, (8, 2),
     "rastrigin", (4, 1)),
    ("NAdam", {"lr": 0.1, "foreach": True}, (5, 7), "rastrigin", (0, 0)),
])
def test_foreach_orders_found_by_a_random_search_agree(optimizer, hparams, shape, objective, index):
    """torch's foreach RAdam folds both of its cases into one factor, its foreach NAdam divides
    sqrt(v_t) by sqrt(1 - beta2^t): recomputed in the for-loop's order these were 3 and 13 ulp
    away and flagged as mismatches; in torch's order they agree exactly."""
    s = objective_session(optimizer, hparams, steps=8, objective=objective, shape=shape)
    for step in (1, 8):
        e = explain(s, "w", index, step=step)
        assert e.implementation == "foreach" and e.ulps == 0, render(e)
        assert_agrees(e)


def test_fused_cpu_sgd_leaving_half_parameters_unchanged_is_flagged_and_explained():
    """Found by the random search: torch 2.13's fused SGD on the CPU does not update float16 and
    bfloat16 parameters in whole SIMD blocks (pytorch/pytorch#191763). Explain flags the element
    torch left as it was, and says why; foreach agrees."""
    from core.torch_issues import fused_sgd_skips_half
    if not fused_sgd_skips_half():
        pytest.skip("this torch's fused SGD updates every element (fixed upstream)")
    s = objective_session("SGD", {"lr": 0.001, "fused": True}, steps=1, dtype="bfloat16")
    e = explain(s, "w", (0, 0))
    assert e.mismatch and e.torch_after == e.before  # torch did not move it
    assert any("pytorch/pytorch#191763" in n for n in e.notes)
    fine = explain(objective_session("SGD", {"lr": 0.001, "foreach": True}, steps=1, dtype="bfloat16"), "w", (0, 0))
    assert not fine.mismatch and not any("191763" in n for n in fine.notes)


def test_a_fused_half_precision_update_is_recomputed_in_float32_as_its_kernel_does():
    """Found by the random search: fused Adam on bfloat16 parameters computes in float32 and rounds
    only what it stores; recomputed in bfloat16 term by term it was 4 ulp away and flagged."""
    s = objective_session("Adam", {"lr": 0.001, "weight_decay": 0.1, "betas": (0.5, 0.9), "eps": 0.001,
                                   "fused": True}, steps=4, dtype="bfloat16", objective="rastrigin")
    for idx in [(4, 0), (0, 0), (2, 3)]:
        e = explain(s, "w", idx, step=4)
        assert e.implementation == "fused" and any("computes in float32" in n for n in e.notes)
        assert_agrees(e)


@pytest.mark.parametrize("optimizer,hparams", [
    ("RMSprop", {"lr": 0.1, "momentum": 0.5, "foreach": True}), ("Adam", {"lr": 0.01, "foreach": True}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "foreach": True}), ("Adadelta", {"foreach": True}),
    ("SGD", {"lr": 0.01, "momentum": 0.9, "foreach": True}), ("Adagrad", {"lr": 0.1, "foreach": True}),
])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_foreach_in_half_precision_multiplies_by_the_rounded_number_as_torch_does(optimizer, hparams, dtype):
    """Found by the random search: on the CPU torch's foreach multiply by a number rounds the number to
    a float16/bfloat16 tensor's dtype first (0.99 becomes 0.98828125 in bfloat16), Tensor.mul_ does
    not; recomputed with the exact number, foreach half-precision updates were flagged (up to 4 ulp)."""
    s = objective_session(optimizer, hparams, steps=3, dtype=dtype, objective="quadratic", shape=(3, 3))
    for step in (1, 3):
        for idx in [(0, 0), (1, 1), (2, 0)]:
            assert_agrees(explain(s, "w", idx, step=step))


def test_a_session_whose_settings_meet_a_known_torch_bug_says_so_when_built():
    """Not only Explain: the session's notice (the window's status line) names the torch bug its
    settings meet, from the start and after an edit that rebuilds it; other settings say nothing."""
    from core.torch_issues import fused_sgd_skips_half
    if not fused_sgd_skips_half():
        pytest.skip("this torch's fused SGD updates every element (fixed upstream)")
    s = objective_session("SGD", {"lr": 0.001, "fused": True}, steps=1, dtype="bfloat16")
    assert "pytorch/pytorch#191763" in s.notice
    assert objective_session("SGD", {"lr": 0.001}, steps=1, dtype="bfloat16").notice == ""
    assert objective_session("SGD", {"lr": 0.001, "fused": True}, steps=1).notice == ""  # float32: fine
    plain = objective_session("SGD", {"lr": 0.001}, steps=1, dtype="bfloat16")
    plain.rebuild(replace(plain.spec, hparams={"lr": 0.001, "fused": True}), "fused=True")
    assert plain.notice.startswith("fused=True: new branch 1") and "pytorch/pytorch#191763" in plain.notice


def test_optimlab_run_notes_the_torch_bug_on_stderr(tmp_path, capsys):
    from core.spec import dumps
    from core.torch_issues import fused_sgd_skips_half
    if not fused_sgd_skips_half():
        pytest.skip("this torch's fused SGD updates every element (fixed upstream)")
    path = tmp_path / "fused.json"
    path.write_text(dumps(SessionSpec(optimizer="SGD", hparams={"lr": 0.1, "fused": True},
                                      tensors=(TensorSpec("w", (8, 8), dtype="bfloat16", grad=ManualGrad("normal")),),
                                      gradient=GradientSpec("manual", when="every_step"))))
    assert main(["run", str(path), "--steps", "2"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("SGD: step 2") and err.startswith("optimlab: note: Torch's fused CPU SGD")
    assert "pytorch/pytorch#191763" in err and err.count("\n") == 1
