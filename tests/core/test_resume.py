"""A session resumed from a plain script's checkpoint goes on bit for bit as the script did.

The script here follows core/tasks.py's documented rules (data, init, data order with a seeded
generator, loss, step), writes ``{"model", "optimizer", "scheduler", "step"}`` with torch.save
at step N and goes on to M; optimlab resumes from the file and steps M - N."""
import json

import numpy as np

import pytest
import torch
import torch.nn.functional as F

from core import cli, session_file
from core.paths import LoadError
from core.resume import resume_spec
from core.session import Session
from core.spec import GradientSpec, GroupSpec, SchedulerSpec, SessionSpec, SpecError
from core.task_spec import TaskSpec
from core.tasks import Task, build_model, make_task_data, task_seeds

# 60 samples, val 0.2: 48 training samples, batches of 16: an epoch is 3 steps
TASK = TaskSpec("mlp", dataset="spirals", n_samples=60, hidden=(8,), activation="tanh", batch_size=16, seed=6)
CASES = {
    "adam_steplr": ("Adam", {"lr": 0.01}, ("StepLR", {"step_size": 4, "gamma": 0.5})),
    "sgd_momentum": ("SGD", {"lr": 0.05, "momentum": 0.9}, None),
    # stepped once an epoch (every 3 steps), as a script does after its inner loop
    "adamw_exponential_per_epoch": ("AdamW", {"lr": 0.01}, ("ExponentialLR", {"gamma": 0.7}, "epoch")),
}


def plain_run(optimizer, hparams, sched, steps, save_at=None, path=None, extra=None, task=TASK, groups=None,
              saver=None):
    """Train ``steps`` steps as the task's rules say; at ``save_at`` write a checkpoint to ``path``
    (with torch.save, or ``saver(model, opt, step)``)."""
    s = task_seeds(task.seed)
    torch.manual_seed(s.init)
    model = build_model(task)
    train_x, train_y, _, _ = make_task_data(task)
    named = dict(model.named_parameters())
    # groups: names, or (names, hyperparameters)
    params = [{"params": [named[n] for n in g[0]], **g[1]} if isinstance(g[0], tuple)
              else {"params": [named[n] for n in g]} for g in groups] if groups else model.parameters()
    opt = getattr(torch.optim, optimizer)(params, **hparams)
    scheduler = getattr(torch.optim.lr_scheduler, sched[0])(opt, **sched[1]) if sched else None
    g = torch.Generator().manual_seed(s.order)
    done = 0
    while done < steps:
        order = torch.randperm(len(train_x), generator=g)
        for i in range(0, len(train_x), task.batch_size):
            if done == steps:
                break
            idx = order[i:i + task.batch_size]
            opt.zero_grad()
            out = model(train_x[idx])
            if task.kind.startswith("digits"):
                F.cross_entropy(out, train_y[idx]).backward()
            else:
                F.binary_cross_entropy_with_logits(out.squeeze(1), train_y[idx].float()).backward()
            opt.step()
            at_epoch_end = i + task.batch_size >= len(train_x)
            if scheduler is not None and (sched[2:] != ("epoch",) or at_epoch_end):
                scheduler.step()
            done += 1
            if done == save_at and saver is not None:
                saver(model, opt, done)
            elif done == save_at:
                ck = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": done, **(extra or {})}
                if scheduler is not None:
                    ck["scheduler"] = scheduler.state_dict()
                torch.save(ck, path)
    return model, opt, scheduler


def session_spec(optimizer, hparams, sched, task=TASK, groups=()):
    return SessionSpec(optimizer=optimizer, hparams=hparams, gradient=GradientSpec(kind="task", task=task),
                       zero_grad_each_step=True, groups=groups,
                       scheduler=None if sched is None else SchedulerSpec(sched[0], sched[1],
                                                                          every=(sched[2:] or ("step",))[0]))


def assert_same(session, model, opt, scheduler=None):
    for n, p in model.named_parameters():
        assert torch.equal(session.params[n], p.detach()), n
    mine, want = session.optimizer.state_dict(), opt.state_dict()
    assert mine["state"].keys() == want["state"].keys()
    for i, st in want["state"].items():
        assert mine["state"][i].keys() == st.keys()
        for k, v in st.items():
            assert torch.equal(mine["state"][i][k], v), (i, k)
    strip = ("params", "param_names")
    assert [{k: v for k, v in g.items() if k not in strip} for g in mine["param_groups"]] == \
        [{k: v for k, v in g.items() if k not in strip} for g in want["param_groups"]]
    if scheduler is not None:
        assert session.scheduler.state_dict() == scheduler.state_dict()


def resumed(spec, path, **kw):
    r = resume_spec(spec, path, **kw)
    return Session(r.spec, blobs=r.blobs), r


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("n", [6, 7])  # 6: at an epoch's end; 7: one batch into the third epoch
def test_a_resumed_session_continues_bit_identically_to_the_script_that_wrote_the_checkpoint(tmp_path, case, n):
    optimizer, hparams, sched = CASES[case]
    m = 14
    path = tmp_path / "ck.pt"
    model, opt, scheduler = plain_run(optimizer, hparams, sched, m, save_at=n, path=path)
    s, r = resumed(session_spec(optimizer, hparams, sched), path)
    assert (s.step_count, r.step, r.step_from) == (n, n, "step")
    s.run(m - n)
    assert s.step_count == m
    assert_same(s, model, opt, scheduler)


def test_the_step_comes_from_the_optimizer_state_when_the_checkpoint_names_none(tmp_path):
    path = tmp_path / "ck.pt"
    plain_run("Adam", {"lr": 0.01}, None, 5, save_at=5, path=path)
    ck = torch.load(path, weights_only=True)
    del ck["step"]
    torch.save(ck, path)
    s, r = resumed(session_spec("Adam", {"lr": 0.01}, None), path)
    assert (s.step_count, r.step_from) == (5, "the optimizer state's step")


def test_groups_as_the_spec_has_them_take_the_checkpoints_positions_in_that_order(tmp_path):
    groups = (("fc1.weight", "out.weight"), ("fc1.bias", "out.bias"))
    path = tmp_path / "ck.pt"
    model, opt, _ = plain_run("SGD", {"lr": 0.05, "momentum": 0.9}, None, 9, save_at=4, path=path, groups=groups)
    s, _ = resumed(session_spec("SGD", {"lr": 0.05, "momentum": 0.9}, None,
                                groups=tuple(GroupSpec(g) for g in groups)), path)
    s.run(5)
    assert_same(s, model, opt)


def test_torchs_generator_comes_from_the_checkpoint_when_it_carries_one(tmp_path):
    path = tmp_path / "ck.pt"
    torch.manual_seed(123)
    saved = torch.random.get_rng_state()
    plain_run("SGD", {"lr": 0.05}, None, 3, save_at=3, path=path, extra={"rng_state": saved})
    torch.manual_seed(0)
    s, r = resumed(session_spec("SGD", {"lr": 0.05}, None), path)
    assert torch.equal(torch.random.get_rng_state(), saved)
    assert not any("no random generator" in note for note in r.notes)


def test_a_resumed_session_saved_and_reopened_goes_on_the_same(tmp_path):
    optimizer, hparams, sched = CASES["adam_steplr"]
    path = tmp_path / "ck.pt"
    model, opt, scheduler = plain_run(optimizer, hparams, sched, 15, save_at=7, path=path)
    s, _ = resumed(session_spec(optimizer, hparams, sched), path)
    s.run(3)
    path.unlink()  # the session keeps what it read: the checkpoint file is not needed again
    for name in ("s.optimlab", "s.json"):
        session_file.save_session(s, tmp_path / name)
        again = session_file.load_session(tmp_path / name)
        assert again.step_count == 10 and again.spec.resume == s.spec.resume
        assert again.history.view().step[0] == 8  # its curves still start after the checkpoint's step
        again.run(5)
        assert_same(again, model, opt, scheduler)


def test_rewinding_stops_at_the_checkpoints_step_and_forks_from_there_exactly(tmp_path):
    optimizer, hparams, sched = CASES["sgd_momentum"]
    path = tmp_path / "ck.pt"
    model, opt, _ = plain_run(optimizer, hparams, sched, 12, save_at=5, path=path)
    s, _ = resumed(session_spec(optimizer, hparams, sched), path)
    s.run(20)
    head = {n: p.detach().clone() for n, p in s.params.items()}
    with pytest.raises(SpecError, match="runs from step 5 to 25 .*there is no step 4"):
        s.goto(4)
    assert s.step_count == 25 and all(torch.equal(head[n], p) for n, p in s.params.items())
    s.goto(5)
    s.run(7)  # a new branch from the checkpoint's step
    assert s.timeline.current == 1 and s.step_count == 12
    assert_same(s, model, opt)
    assert s.undo() and (s.timeline.current, s.step_count) == (0, 25)  # back to before the rewind
    assert all(torch.equal(head[n], p) for n, p in s.params.items())
    h = s.history.view()
    assert h.step[0] == 6 and len(h.step) == 20  # the curves run from the step after the checkpoint's
    assert np.isfinite(h.loss).all()


def test_task_seek_stands_where_serving_that_many_batches_leaves_the_data_order():
    for n in (0, 2, 3, 7):
        served, sought = Task(TASK), Task(TASK)
        for _ in range(n):
            served.next_batch()
        sought.seek(n)
        for _ in range(5):
            a, b = served.next_batch(), sought.next_batch()
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ----- refusals: one sentence, nothing built -----

def test_a_checkpoint_of_another_model_is_refused_naming_the_tensor(tmp_path):
    path = tmp_path / "ck.pt"
    other = TaskSpec("mlp", dataset="spirals", n_samples=60, hidden=(16,), activation="tanh", batch_size=16, seed=6)
    plain_run("SGD", {"lr": 0.05}, None, 3, save_at=3, path=path, task=other)
    with pytest.raises(LoadError, match=r"ck.pt: fc1.weight has shape \[16, 2\] in the checkpoint, but \[8, 2\]"):
        resume_spec(session_spec("SGD", {"lr": 0.05}, None), path)


def test_a_checkpoint_without_optimizer_state_or_step_is_refused_in_one_sentence(tmp_path):
    path = tmp_path / "ck.pt"
    plain_run("SGD", {"lr": 0.05}, None, 3, save_at=3, path=path)
    ck = torch.load(path, weights_only=True)
    torch.save({"model": ck["model"], "step": 3}, path)
    with pytest.raises(LoadError, match="holds no optimizer state"):
        resume_spec(session_spec("SGD", {"lr": 0.05}, None), path)
    torch.save({"model": ck["model"], "optimizer": ck["optimizer"]}, path)  # SGD without momentum has no step
    with pytest.raises(LoadError, match="no step found in the checkpoint"):
        resume_spec(session_spec("SGD", {"lr": 0.05}, None), path)


def test_an_optimizer_state_of_another_class_is_refused_by_the_engine(tmp_path):
    path = tmp_path / "ck.pt"
    plain_run("Adam", {"lr": 0.01}, None, 3, save_at=3, path=path)
    with pytest.raises(LoadError, match="from Adam.*but the session uses SGD"):
        resumed(session_spec("SGD", {"lr": 0.05}, None), path)


def _spec_file(tmp_path, optimizer, hparams, task=TASK):
    from core import spec as specmod
    p = tmp_path / "task.json"
    p.write_text(json.dumps(specmod.document(session_spec(optimizer, hparams, None, task=task))))
    return p


def test_the_cli_resumes_steps_and_saves_a_session_that_reopens_at_the_same_step(tmp_path, capsys):
    path = tmp_path / "ck.pt"
    model, opt, _ = plain_run("SGD", {"lr": 0.05, "momentum": 0.9}, None, 11, save_at=7, path=path)
    out = tmp_path / "s.optimlab"
    code = cli.main(["resume", str(path), "--task", str(_spec_file(tmp_path, "SGD", {"lr": 0.05, "momentum": 0.9})),
                     "--steps", "4", "-o", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "step 7 from step" in printed and "at step 11" in printed
    s = session_file.load_session(out)
    assert s.step_count == 11
    assert_same(s, model, opt)


def test_the_cli_refuses_bad_input_in_one_line_with_status_2_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "ck.pt"
    plain_run("SGD", {"lr": 0.05}, None, 3, save_at=3, path=path)
    ck = torch.load(path, weights_only=True)
    torch.save({"model": ck["model"], "optimizer": ck["optimizer"]}, path)
    spec = _spec_file(tmp_path, "SGD", {"lr": 0.05})
    out = tmp_path / "s.optimlab"
    for args, said in ((["--task", str(spec)], "no step found"),
                       (["--task", str(spec), "--step", "-2"], "--step must be"),
                       (["--task", str(tmp_path / "nope.json"), "--step", "3"], "nope.json")):
        code = cli.main(["resume", str(path), *args, "-o", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and said in err and err.count("\n") == 1, err
        assert not out.exists()
    code = cli.main(["resume", str(path), "--task", str(spec), "--step", "3", "-o", str(out)])
    assert code == 0 and session_file.load_session(out).step_count == 3


def test_another_optimizer_starts_fresh_at_the_checkpoints_step_with_its_weights_and_data(tmp_path):
    from core import edits
    path = tmp_path / "ck.pt"
    model, _, _ = plain_run("Adam", {"lr": 0.01}, None, 7, save_at=7, path=path)
    s, _ = resumed(session_spec("Adam", {"lr": 0.01}, None), path)
    s.run(2)
    edits.with_optimizer(s, "SGD")
    assert (s.timeline.current, s.step_count, s.spec.optimizer) == (1, 7, "SGD")
    assert s.optimizer.state_dict()["state"] == {}
    for n, p in model.named_parameters():
        assert torch.equal(s.params[n], p.detach()), n
    assert s.task.batches_served == 7  # the data goes on where the checkpoint's run was
    s.run(1)
    assert s.step_count == 8
    s.goto(9, branch=0)  # the Adam branch is kept
    assert s.spec.optimizer == "Adam" and s.step_count == 9


def test_explain_works_after_the_checkpoints_step_and_refuses_a_step_before_it_in_one_sentence(tmp_path):
    from core.explain import explain
    path = tmp_path / "ck.pt"
    plain_run("SGD", {"lr": 0.05, "momentum": 0.9}, None, 4, save_at=4, path=path)
    s, _ = resumed(session_spec("SGD", {"lr": 0.05, "momentum": 0.9}, None), path)
    s.run(3)
    assert explain(s, "fc1.weight", (0, 0), step=5) is not None
    with pytest.raises(SpecError, match="has steps 5 to 7; there is no update at step 4"):
        explain(s, "fc1.weight", (0, 0), step=4)


DROPOUT_SCRIPT = '''
import torch
from torch import nn


def make_data():
    x = torch.randn(40, 3)
    y = x.sum(1, keepdim=True).sin()
    return x[:30], y[:30], x[30:], y[30:]


def make_model():
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 1))


def loss_fn(output, target):
    return nn.functional.mse_loss(output, target)
'''


@pytest.fixture
def untrusted():
    from core import trust
    trust.forget()
    yield
    trust.forget()


def test_a_task_scripts_checkpoint_with_torchs_generator_resumes_bit_identically_with_dropout(tmp_path, capsys,
                                                                                                untrusted):
    """The CLI reads the optimizer class from the checkpoint; dropout draws from torch's generator,
    which the checkpoint carries, so the steps after it are the script's exactly."""
    import runpy
    script = tmp_path / "task.py"
    script.write_text(DROPOUT_SCRIPT)
    ns = runpy.run_path(str(script))
    seeds, bs, n, m = task_seeds(3), 8, 6, 13  # 30 samples: 4 batches an epoch, the last one of 6
    torch.manual_seed(seeds.data)
    train_x, train_y, _, _ = ns["make_data"]()
    torch.manual_seed(seeds.init)
    model = ns["make_model"]()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(seeds.order)
    done, path = 0, tmp_path / "ck.pt"
    torch.manual_seed(99)  # the run's own generator state: only the checkpoint can tell optimlab
    while done < m:
        order = torch.randperm(len(train_x), generator=g)
        for i in range(0, len(train_x), bs):
            if done == m:
                break
            idx = order[i:i + bs]
            opt.zero_grad()
            ns["loss_fn"](model(train_x[idx]), train_y[idx]).backward()
            opt.step()
            done += 1
            if done == n:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "iteration": n,
                            "rng_state": torch.random.get_rng_state()}, path)
    out = tmp_path / "s.optimlab"
    args = ["resume", str(path), "--task", str(script), "--batch-size", str(bs), "--seed", "3",
            "--steps", str(m - n), "-o", str(out)]
    assert cli.main(args) == 2 and "--trust-script" in capsys.readouterr().err  # consent first
    assert not out.exists()
    assert cli.main(args + ["--trust-script"]) == 0
    assert "step 6 from iteration" in capsys.readouterr().out
    s = session_file.load_session(out)
    assert s.spec.optimizer == "Adam" and s.step_count == m
    assert_same(s, model, opt)


class Trap:
    """A pickle that would create a file when unpickled (never, here: weights_only)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path
        return (Path.touch, (Path(self.marker),))


def test_a_checkpoint_holding_a_class_resumes_without_running_it_and_refuses_it_where_it_is_needed(tmp_path):
    path = tmp_path / "ck.pt"
    model, opt, _ = plain_run("SGD", {"lr": 0.05, "momentum": 0.9}, None, 3, save_at=3, path=path)
    ck = torch.load(path, weights_only=True)
    marker = tmp_path / "executed"
    torch.save({**ck, "callbacks": [Trap(marker)]}, path)
    s, _ = resumed(session_spec("SGD", {"lr": 0.05, "momentum": 0.9}, None), path)
    assert s.step_count == 3 and not marker.exists()
    ck["optimizer"]["state"][0]["momentum_buffer"] = Trap(marker)
    torch.save(ck, path)
    with pytest.raises(LoadError, match=r"ck.pt: optimizer.state.0.momentum_buffer is not loaded: needs class"):
        resume_spec(session_spec("SGD", {"lr": 0.05, "momentum": 0.9}, None), path)
    assert not marker.exists()


def test_another_model_in_the_problem_starts_from_step_0_and_another_batch_size_stays_at_the_checkpoint(tmp_path):
    from dataclasses import replace as dc_replace

    from core import edits
    path = tmp_path / "ck.pt"
    plain_run("SGD", {"lr": 0.05}, None, 4, save_at=4, path=path)
    s, _ = resumed(session_spec("SGD", {"lr": 0.05}, None), path)
    task = s.spec.gradient.task
    wider = dc_replace(s.spec, gradient=dc_replace(s.spec.gradient, task=dc_replace(task, hidden=(16,))), groups=())
    edits.with_problem(s, wider)
    assert (s.timeline.current, s.step_count, s.spec.resume) == (1, 0, None)
    assert tuple(s.params["fc1.weight"].shape) == (16, 2)
    s.goto(4, branch=0)
    bigger = dc_replace(s.spec, gradient=dc_replace(s.spec.gradient, task=dc_replace(task, batch_size=24)))
    edits.with_problem(s, bigger)
    assert (s.timeline.current, s.step_count) == (2, 4) and s.task.spec.batch_size == 24


def test_a_checkpoint_with_two_optimizers_asks_which_and_a_comparison_starts_at_its_step(tmp_path):
    from core.compare import Comparison, RunSpec
    path = tmp_path / "ck.pt"
    plain_run("SGD", {"lr": 0.05}, None, 3, save_at=3, path=path)
    ck = torch.load(path, weights_only=True)
    torch.save({**ck, "optimizers": [ck["optimizer"], ck["optimizer"]]}, path)
    with pytest.raises(LoadError, match=r"holds 3 optimizer states .*--optimizer-state I"):
        resume_spec(session_spec("SGD", {"lr": 0.05}, None), path)
    s, _ = resumed(session_spec("SGD", {"lr": 0.05}, None), path, optimizer=2)
    assert s.step_count == 3
    c = Comparison([RunSpec.from_spec(s), RunSpec.from_spec(s)])  # tests/core/test_compare_resume.py
    assert c.step_count == 3 and all(r.step_count == 3 for r in c.runs)


def test_a_torch_distributed_checkpoint_keyed_by_names_resumes_bit_identically(tmp_path):
    """get_state_dict keys the optimizer's state by parameter name; the folder is read by names."""
    import warnings

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict
    folder = tmp_path / "dcp"

    def save(model, opt, step):
        msd, osd = get_state_dict(model, opt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "assuming the intent is to save in a single process"
            dcp.save({"model": msd, "optim": osd, "step": step}, checkpoint_id=str(folder))
    optimizer, hparams, _ = CASES["sgd_momentum"]
    model, opt, _ = plain_run(optimizer, hparams, None, 11, save_at=5, saver=save)
    s, r = resumed(session_spec(optimizer, hparams, None), folder)
    assert r.step == 5 and r.notes[0].startswith("torch.distributed.checkpoint checkpoint")
    s.run(6)
    assert_same(s, model, opt)


def test_the_shipped_digits_example_resumes_from_a_scripts_checkpoint_by_its_name(tmp_path, capsys):
    """Its groups (weights, then biases without weight decay) and its per-epoch StepLR, as the
    script built them; the CLI takes the example by name."""
    from core.spec import loads
    spec, _ = loads((cli.EXAMPLES / "digits_mlp.json").read_text())
    task = spec.gradient.task
    groups = [(g.tensors, dict(g.hparams)) for g in spec.groups]
    sched = (spec.scheduler.name, dict(spec.scheduler.params), "epoch")
    path = tmp_path / "ck.pt"
    model, opt, scheduler = plain_run("SGD", dict(spec.hparams), sched, 100, save_at=50, path=path, task=task,
                                      groups=groups)
    out = tmp_path / "s.optimlab"
    assert cli.main(["resume", str(path), "--task", "digits_mlp", "--steps", "50", "-o", str(out)]) == 0
    assert "at step 100" in capsys.readouterr().out
    assert_same(session_file.load_session(out), model, opt, scheduler)


def test_ctrl_c_stops_a_cli_resume_between_two_steps_and_saves_what_was_asked(tmp_path, capsys, monkeypatch):
    import os
    import signal

    from core.session import Session as S
    path = tmp_path / "ck.pt"
    plain_run("SGD", {"lr": 0.05}, None, 3, save_at=3, path=path)
    real = S.advance

    def advance(self):  # the user presses Ctrl+C during the fifth step after the checkpoint
        if self.step_count == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self)
    monkeypatch.setattr(S, "advance", advance)
    out = tmp_path / "s.optimlab"
    code = cli.main(["resume", str(path), "--task", str(_spec_file(tmp_path, "SGD", {"lr": 0.05})), "--step", "3",
                     "--steps", "100", "-o", str(out)])
    assert code == 130 and "interrupted at step 8; saved" in capsys.readouterr().err
    assert session_file.load_session(out).step_count == 8
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
