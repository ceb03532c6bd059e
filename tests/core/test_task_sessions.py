"""Sessions that train a model on data, with a scheduler, equal a plain PyTorch script bit for bit."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core import cli, session_file
from core.session import Session
from core.spec import GradientSpec, GroupSpec, SchedulerSpec, SessionSpec, SetHparam, SpecError, loads
from core.task_spec import TaskSpec
from core.tasks import build_model, make_task_data, task_seeds

EXAMPLES = Path(__file__).resolve().parents[2] / "resources" / "examples"


def task_spec(kind="mlp", **kw):
    base = dict(kind=kind, n_samples=60, batch_size=16, eval_every=5, seed=3)
    base.update(kw)
    return TaskSpec(**base)


def plain_run(ts, opt_name, hparams, steps, sched=None, groups=None):
    """The documented recipe, written out as a plain script would."""
    seeds = task_seeds(ts.seed)
    tx, ty, vx, vy = make_task_data(ts)
    torch.manual_seed(seeds.init)
    model = build_model(ts)
    params = dict(model.named_parameters())
    if groups:
        opt = getattr(torch.optim, opt_name)([{"params": [params[n] for n in g.tensors], **g.hparams}
                                              for g in groups], **hparams)
    else:
        layers = {}
        for n, p in params.items():
            layers.setdefault(n.rpartition(".")[0], []).append(p)
        opt = getattr(torch.optim, opt_name)([{"params": ps} for ps in layers.values()], **hparams)
    scheduler = getattr(torch.optim.lr_scheduler, sched.name)(opt, **sched.params) if sched else None
    g = torch.Generator().manual_seed(seeds.order)
    n, bs = tx.shape[0], ts.batch_size
    per_epoch = -(-n // bs)
    order, i = None, 0
    for step in range(1, steps + 1):
        if i == 0:
            order = torch.randperm(n, generator=g) if ts.shuffle else torch.arange(n)
        idx = order[i * bs:(i + 1) * bs]
        i = (i + 1) % per_epoch
        x, y = tx[idx], ty[idx]
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = F.binary_cross_entropy_with_logits(out.squeeze(1), y.to(torch.float32)) if ts.kind == "mlp" \
            else F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        if scheduler is not None and (sched.every == "step" or i == 0):
            scheduler.step()
    return model, opt


@pytest.mark.parametrize("opt_name, hparams, sched", [
    ("SGD", {"lr": 0.1, "momentum": 0.9}, SchedulerSpec("StepLR", {"step_size": 2, "gamma": 0.5}, "epoch")),
    ("Adam", {"lr": 0.01}, SchedulerSpec("CosineAnnealingLR", {"T_max": 20}, "step")),
    ("AdamW", {}, None),
])
def test_task_session_equals_plain_training_loop(opt_name, hparams, sched):
    ts = task_spec()
    spec = SessionSpec(optimizer=opt_name, hparams=hparams, gradient=GradientSpec("task", task=ts),
                       scheduler=sched, zero_grad_each_step=True)
    s = Session(spec)
    s.step(13)  # crosses epoch boundaries (4 batches an epoch)
    model, opt = plain_run(ts, opt_name, hparams, 13, sched)
    for (n, p), (m, q) in zip(s.params.items(), model.named_parameters()):
        assert n == m and torch.equal(p, q)
    a, b = s.optimizer.state_dict(), opt.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for k in a["state"]:
        for key, v in a["state"][k].items():
            assert torch.equal(v, b["state"][k][key])


def test_digits_groups_decay_recipe_matches_plain():
    ts = task_spec("digits_mlp", batch_size=64, n_samples=200)
    groups = (GroupSpec(("fc1.weight", "out.weight")), GroupSpec(("fc1.bias", "out.bias"), {"weight_decay": 0.0}))
    spec = SessionSpec(optimizer="SGD", hparams={"lr": 0.05, "weight_decay": 1e-3},
                       gradient=GradientSpec("task", task=ts), groups=groups, zero_grad_each_step=True)
    s = Session(spec)
    s.step(30)
    model, _ = plain_run(ts, "SGD", {"lr": 0.05, "weight_decay": 1e-3}, 30, groups=groups)
    for p, q in zip(s.params.values(), model.parameters()):
        assert torch.equal(p, q)


def test_evaluation_every_k_steps_lands_in_history():
    spec = SessionSpec(optimizer="Adam", hparams={"lr": 0.01}, zero_grad_each_step=True,
                       gradient=GradientSpec("task", task=task_spec(eval_every=4)))
    s = Session(spec)
    s.step(12)
    h = s.history.view()
    evaluated = h.step[~np.isnan(h.val_loss)]
    assert list(evaluated) == [4, 8, 12]
    assert 0.0 <= s.last_eval["val_accuracy"] <= 1.0
    assert s.task.model.training, "evaluation restores train mode"


def test_saved_task_session_with_scheduler_continues_bit_identically(tmp_path):
    spec = SessionSpec(optimizer="SGD", hparams={"lr": 0.1, "momentum": 0.9}, zero_grad_each_step=True,
                       gradient=GradientSpec("task", task=task_spec()),
                       scheduler=SchedulerSpec("StepLR", {"step_size": 1, "gamma": 0.9}, "epoch"))
    a = Session(spec)
    a.step(6)  # mid-epoch
    a.apply(SetHparam(1, "lr", 0.05))
    session_file.save_session(a, tmp_path / "t.optimlab")
    b = session_file.load_session(tmp_path / "t.optimlab")
    a.step(9)
    b.step(9)
    for p, q in zip(a.param_list, b.param_list):
        assert torch.equal(p, q)
    assert a.lrs() == b.lrs()
    assert a.scheduler.state_dict() == b.scheduler.state_dict()


def test_bad_task_or_scheduler_is_refused_with_one_sentence():
    with pytest.raises(SpecError, match="hidden"):
        SessionSpec(gradient=GradientSpec("task", task={"kind": "linear_regression", "hidden": [3]})).check()
    with pytest.raises(SpecError, match="StepLR"):
        Session(SessionSpec(gradient=GradientSpec("task", task=task_spec()),
                            scheduler=SchedulerSpec("StepLR", {"step_size": "often"})))
    with pytest.raises(SpecError, match="leave 'tensors' empty"):
        from core.spec import TensorSpec
        SessionSpec(tensors=[TensorSpec("w", (2,))], gradient=GradientSpec("task", task=task_spec())).check()


def test_training_examples_run_from_the_cli(capsys):
    assert cli.main(["run", "moons_mlp", "--steps", "10"]) == 0
    assert "Adam: step 110" in capsys.readouterr().out
    spec, journal = loads((EXAMPLES / "digits_mlp.json").read_text())
    s = Session(spec, journal)
    assert s.last_eval["val_accuracy"] > 0.9
