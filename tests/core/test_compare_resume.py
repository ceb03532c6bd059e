"""A comparison of a resumed session: every configuration starts at the checkpoint's step N.

The checkpoint is written by a plain script (tests/core/test_resume.py's ``plain_run``: Adam,
lr 0.01, StepLR, saved at step 7). The oracle ``plain_continue`` is what a user would write in
plain PyTorch to go on from that file: load the model, build the optimizer (the checkpoint's
class loads its state, then the named arguments are set in every group; another class starts
fresh), build the scheduler (loading its state with the optimizer's), skip the N batches the
data order has served, and train. Each run of the comparison equals it with torch.equal, and
equals the same resumed session stepped alone."""
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core import compare_cli, compare_file
from core.compare import Comparison, RunSpec, config_run
from core.session import Session
from core.spec import SchedulerSpec, SpecError
from core.tasks import build_model, make_task_data, task_seeds

from .test_resume import CASES, TASK, assert_same, plain_run, resumed, session_spec

N, MORE = 7, 9  # the checkpoint's step; lockstep steps after it


def plain_continue(path, optimizer, hparams, sched, steps, load_state, task=TASK):
    """Plain PyTorch from the checkpoint at ``path`` (step N) to step N + ``steps``."""
    ck = torch.load(path, weights_only=True)
    s = task_seeds(task.seed)
    torch.manual_seed(s.init)
    model = build_model(task)
    model.load_state_dict(ck["model"])
    opt = getattr(torch.optim, optimizer)(model.parameters(), **hparams)
    scheduler = getattr(torch.optim.lr_scheduler, sched[0])(opt, **sched[1]) if sched else None
    if load_state:
        opt.load_state_dict(ck["optimizer"])
        for g in opt.param_groups:  # the arguments the configuration names win over the checkpoint's
            g.update(hparams)
        if scheduler is not None:
            scheduler.load_state_dict(ck["scheduler"])
    train_x, train_y, _, _ = make_task_data(task)
    g = torch.Generator().manual_seed(s.order)
    done, start = 0, ck["step"]
    while done < start + steps:
        order = torch.randperm(len(train_x), generator=g)
        for i in range(0, len(train_x), task.batch_size):
            if done == start + steps:
                break
            done += 1
            if done <= start:
                continue  # batches the checkpoint's run has served
            idx = order[i:i + task.batch_size]
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(model(train_x[idx]).squeeze(1), train_y[idx].float()).backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
    return model, opt, scheduler


@pytest.fixture
def adam_checkpoint(tmp_path):
    """(the checkpoint's path, the resumed session at step N, the script's own run to N + MORE)."""
    optimizer, hparams, sched = CASES["adam_steplr"]
    path = tmp_path / "ck.pt"
    whole = plain_run(optimizer, hparams, sched, N + MORE, save_at=N, path=path)
    s, _ = resumed(session_spec(optimizer, hparams, sched), path)
    return path, s, whole


def alone(rs: RunSpec, blobs: dict, steps: int) -> Session:
    """The same resumed session stepped alone: its spec, the checkpoint's data, its edits at step N."""
    s = Session(rs.spec, blobs=blobs)
    for _, action in rs.script:
        s.apply(action)
    s.run(steps)
    return s


def assert_equal_sessions(a: Session, b: Session) -> None:
    for n, p in b.params.items():
        assert torch.equal(a.params[n], p), n
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for i, st in sb["state"].items():
        for k, v in st.items():
            assert torch.equal(sa["state"][i][k], v), (i, k)


def test_every_run_of_a_resumed_comparison_goes_on_from_the_checkpoint_as_plain_pytorch_would(adam_checkpoint):
    path, s, (model, opt, scheduler) = adam_checkpoint
    sgd = config_run(s.spec, "SGD", {"lr": 0.05, "momentum": 0.9}, None)
    slower = config_run(s.spec, "Adam", {"lr": 0.003}, None)
    c = Comparison([RunSpec.from_branch(s, 0), sgd, slower])
    assert c.step_count == N
    base, fresh, other_lr = c.runs
    assert fresh.label == "SGD lr=0.05 momentum=0.9 · fresh at step 7"
    assert other_lr.label == "Adam lr=0.003 · from the checkpoint's state"
    c.run(MORE)
    assert c.step_count == N + MORE and all(r.step_count == N + MORE and not r.halted for r in c.runs)
    # the resumed branch itself: bit for bit the script that wrote the checkpoint, scheduler included
    assert_same(base.session, model, opt, scheduler)
    m, o, _ = plain_continue(path, "SGD", {"lr": 0.05, "momentum": 0.9}, None, MORE, load_state=False)
    assert_same(fresh.session, m, o)
    m, o, _ = plain_continue(path, "Adam", {"lr": 0.003}, None, MORE, load_state=True)
    assert_same(other_lr.session, m, o)
    assert other_lr.session.optimizer.param_groups[0]["lr"] == 0.003
    assert other_lr.session.optimizer.state_dict()["state"][0]["step"] == N + MORE  # Adam's moments went on
    # and each is the same resumed session run alone
    blobs = s.timeline.blobs
    for run, rs in ((fresh, sgd), (other_lr, slower)):
        assert_equal_sessions(run.session, alone(rs, blobs, MORE))


def test_a_configuration_with_the_sessions_scheduler_takes_the_checkpoints_scheduler_state(adam_checkpoint):
    path, s, (model, opt, scheduler) = adam_checkpoint
    same = config_run(s.spec, "Adam", {}, s.spec.scheduler)
    fresh = config_run(s.spec, "SGD", {"lr": 0.05}, SchedulerSpec("StepLR", {"step_size": 2, "gamma": 0.5}, "step"))
    c = Comparison([RunSpec.from_spec(s), same, fresh])  # the checkpoint's data comes with the session's spec
    c.run(MORE)
    assert_same(c.runs[1].session, model, opt, scheduler)
    m, o, sch = plain_continue(path, "SGD", {"lr": 0.05}, ("StepLR", {"step_size": 2, "gamma": 0.5}), MORE,
                               load_state=False)
    assert_same(c.runs[2].session, m, o, sch)
    assert c.runs[2].session.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5 ** (MORE // 2))
    for rs, run in ((same, c.runs[1]), (fresh, c.runs[2])):
        by_itself = alone(rs, s.timeline.blobs, MORE)
        assert_equal_sessions(run.session, by_itself)
        assert run.session.scheduler.state_dict() == by_itself.scheduler.state_dict()


def test_curves_table_and_distances_count_steps_from_the_checkpoints_step(adam_checkpoint):
    _, s, _ = adam_checkpoint
    c = Comparison([RunSpec.from_branch(s, 0), config_run(s.spec, "SGD", {"lr": 0.05}, None)])
    c.observer.force_next = True
    c.run(MORE)
    h = c.history()
    for run in h.runs:
        assert list(run.step) == list(range(N + 1, N + MORE + 1))
    assert h.cross.step[0] >= N + 1 and h.cross.step[-1] == N + MORE
    assert len(h.cross.step) <= MORE  # no empty buckets for the steps before the checkpoint's
    d = h.cross.between(c.runs[0].id, c.runs[1].id)[0]
    assert d[-1] > 0
    text = compare_cli.table(c, [3, N + 2], ["loss", "distance"])
    head = text.splitlines()[0]
    assert f"loss@{N + 2}" in head and f"loss@{N + MORE}" in head and "loss@3" not in head
    frame = c.make_frame(1)
    assert frame.step == N + MORE and all(r.snapshot.step == N + MORE for r in frame.runs)


def test_a_configuration_added_later_starts_at_the_checkpoints_step_and_catches_up(adam_checkpoint):
    path, s, _ = adam_checkpoint
    c = Comparison([RunSpec.from_branch(s, 0), config_run(s.spec, "SGD", {"lr": 0.05}, None)])
    c.run(4)
    later = c.add(config_run(s.spec, "Adam", {"lr": 0.02}, None))
    assert later.joined == N + 4 and later.step_count == N + 4
    c.run(MORE - 4)
    m, o, _ = plain_continue(path, "Adam", {"lr": 0.02}, None, MORE, load_state=True)
    assert_same(later.session, m, o)
    assert later.session.history.view().step[0] == N + 1


def test_a_saved_resumed_comparison_reopens_without_the_checkpoint_file_and_goes_on_the_same(adam_checkpoint,
                                                                                              tmp_path):
    path, s, (model, opt, scheduler) = adam_checkpoint
    c = Comparison([RunSpec.from_branch(s, 0), config_run(s.spec, "Adam", {"lr": 0.003}, None)])
    c.run(4)
    out = tmp_path / "c.optimlab-compare"
    compare_file.save(c, out)
    from core import session_file  # the checkpoint's data is stored once, not once per run
    assert out.stat().st_size <= sum(len(session_file.pack(r.session)) for r in c.runs) - 0.8 * path.stat().st_size
    path.unlink()  # the checkpoint's data travels inside: no dangling path
    again = compare_file.load(out)
    assert again.step_count == N + 4
    again.run(MORE - 4)
    assert_same(again.runs[0].session, model, opt, scheduler)
    c.run(MORE - 4)
    assert_equal_sessions(again.runs[1].session, c.runs[1].session)
    assert again.history().runs[0].step[0] == N + 1
    # a configuration added to the reopened comparison finds the checkpoint's data in the runs
    added = again.add(config_run(again.spec, "SGD", {"lr": 0.05}, None))
    assert added.step_count == N + MORE and not added.halted


def test_the_cli_compares_a_saved_resumed_session_from_its_step(adam_checkpoint, tmp_path, capsys):
    from core import cli, session_file
    _, s, _ = adam_checkpoint
    session_file.save_session(s, tmp_path / "s.optimlab")
    out = tmp_path / "c.optimlab-compare"
    assert cli.main(["compare", str(tmp_path / "s.optimlab"), "--config", "SGD lr=0.05", "--config",
                     "Adam lr=0.003", "--steps", "3", "--at", "2,8", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "loss@8" in text and "loss@10" in text and "loss@2" not in text
    assert "SGD lr=0.05 · fresh at step 7" in text and "Adam lr=0.003 · from the checkpoint's state" in text
    assert compare_file.load(out).step_count == N + 3


def test_what_cannot_be_made_right_is_refused_in_one_sentence(adam_checkpoint, tmp_path):
    _, s, _ = adam_checkpoint
    other = SchedulerSpec("ExponentialLR", {"gamma": 0.9})
    with pytest.raises(SpecError, match=r"^Adam · ExponentialLR: with the checkpoint's Adam state it goes on "
                                        r"with the session's scheduler \(StepLR step_size=4, gamma=0.5\), not another"):
        config_run(s.spec, "Adam", {}, other)
    with pytest.raises(SpecError, match="^Adam lr=0.003 · StepLR: the session's StepLR sets the lr of the "
                                        "checkpoint's Adam state itself; drop lr=, or the scheduler$"):
        config_run(s.spec, "Adam", {"lr": 0.003}, s.spec.scheduler)
    assert config_run(s.spec, "SGD", {}, other).spec.resume.optimizer_state is False  # another class: fresh
    # a configuration from step 0 is not on a comparison that starts at the checkpoint's step
    with pytest.raises(SpecError, match=r"^plain is not on the comparison's problem: it starts from step 0, "
                                        r"the comparison from a checkpoint at step 7 \(ck.pt\)$"):
        Comparison([RunSpec.from_branch(s, 0), RunSpec("plain", replace(s.spec, resume=None))])


def test_a_named_lr_is_set_in_every_group_but_one_the_problem_gives_its_own(tmp_path):
    """Weights and biases in two groups, the biases with their own lr (as the problem says):
    "Adam lr=0.003" sets the weights' group only, as ``g["lr"] = 0.003`` would for that group."""
    from core.spec import GroupSpec
    names = (("fc1.weight", "out.weight"), ("fc1.bias", "out.bias"))
    path = tmp_path / "ck.pt"
    plain_run("Adam", {"lr": 0.01}, None, N, save_at=N, path=path, groups=(names[0], (names[1], {"lr": 0.02})))
    groups = (GroupSpec(names[0]), GroupSpec(names[1], {"lr": 0.02}))
    s, _ = resumed(session_spec("Adam", {"lr": 0.01}, None, groups=groups), path)
    rs = config_run(s.spec, "Adam", {"lr": 0.003}, None)
    c = Comparison([RunSpec.from_spec(s), rs])
    c.run(3)
    assert [g["lr"] for g in c.runs[1].session.optimizer.param_groups] == [0.003, 0.02]
    assert_equal_sessions(c.runs[1].session, alone(rs, s.timeline.blobs, 3))


def test_the_checkpoints_class_takes_its_state_even_beside_a_branch_that_started_another_fresh(adam_checkpoint):
    """A branch switched to SGD at the checkpoint's step, promoted: Adam added to it is the
    checkpoint's class (told by its param_groups), so it goes on with the checkpoint's moments."""
    from core import edits
    path, s, _ = adam_checkpoint
    edits.with_optimizer(s, "SGD")
    c = Comparison([RunSpec.from_branch(s, 1), RunSpec.from_spec(s)])
    assert [r.label for r in c.runs] == ["branch 1: SGD lr=0.01 · StepLR · fresh at step 7",
                                        "SGD lr=0.01 · StepLR · fresh at step 7"]
    adam = c.add(c.config("Adam", {"lr": 0.003}, None))
    assert adam.label == "Adam lr=0.003 · from the checkpoint's state"
    c.run(MORE)
    m, o, _ = plain_continue(path, "Adam", {"lr": 0.003}, None, MORE, load_state=True)
    assert_same(adam.session, m, o)
    with pytest.raises(SpecError, match="which this comparison's SGD started without; give it no scheduler"):
        c.config("Adam", {}, s.spec.scheduler)


def test_dropout_runs_resumed_in_lockstep_each_draw_from_the_checkpoints_generator_as_alone(tmp_path):
    """A task script's model with dropout, resumed from a checkpoint carrying torch's generator:
    every run starts drawing from that state (not from the global one at the comparison's start),
    each keeps its own afterwards, and each equals the same resumed session made alone."""
    from core import resume, trust
    from .test_resume import DROPOUT_SCRIPT
    script = tmp_path / "task.py"
    script.write_text(DROPOUT_SCRIPT)
    trust.trust_file(str(script))
    try:
        base = replace(resume.task_spec_for(str(script), None, optimizer="Adam", batch_size=8, seed=3),
                       hparams={"lr": 0.01})
        torch.manual_seed(99)
        writer = Session(base)
        writer.run(6)
        path = tmp_path / "ck.pt"
        torch.save({"model": dict(writer.task.model.state_dict()), "optimizer": writer.optimizer.state_dict(),
                    "iteration": 6, "rng_state": torch.random.get_rng_state()}, path)
        writer.run(5)  # the run that wrote the checkpoint, on to step 11
        r = resume.resume_spec(base, path)
        s = Session(r.spec, blobs=r.blobs)
        configs = [RunSpec.from_spec(s), config_run(s.spec, "SGD", {"lr": 0.05}, None),
                   config_run(s.spec, "Adam", {"lr": 0.003}, None)]
        torch.manual_seed(1234)  # the global generator at the comparison's start is not the checkpoint's
        c = Comparison(configs)
        c.run(5)
        assert_equal_sessions(c.runs[0].session, writer)  # dropout's draws went on as the script's
        for rs, run in zip(configs[1:], c.runs[1:]):
            torch.manual_seed(4321)
            assert_equal_sessions(run.session, alone(rs, r.blobs, 5))
    finally:
        trust.forget()



def test_the_apps_path_a_resumed_session_on_one_runner_compared_in_a_runner_process(tmp_path):
    """As the app does it: the main runner resumes the checkpoint and hands its configuration
    (with the checkpoint's data) over; a runner process builds the comparison at step N, adds the
    form's Adam there, and its runs equal plain PyTorch from the file."""
    import time

    from core import compare_edits, edits
    from core.compare_frame import ComparisonFrame
    from core.runner import Runner
    from core.runner_process import ProcessRunner
    from .test_resume import _spec_file
    path = tmp_path / "ck.pt"
    plain_run("Adam", {"lr": 0.01}, None, N, save_at=N, path=path)
    main = Runner(edits.blank)
    try:
        main.replace(edits.resume_checkpoint, str(path), str(_spec_file(tmp_path, "Adam", {"lr": 0.01}))).result(60)
        first = main.call(compare_edits.current_run).result(60)
    finally:
        main.stop()
    path_copy = tmp_path / "kept.pt"
    path.rename(path_copy)  # the runner process reads nothing from the file: the data came with the run
    r = ProcessRunner(None)
    try:
        second = config_run(first.spec, "SGD", {"lr": 0.05}, None, first.blobs)
        r.replace(compare_edits.build, [first, second]).result(60)
        assert r.call(compare_edits.add_config, "Adam", {"lr": 0.003}, None).result(60) == \
            "Adam lr=0.003 · from the checkpoint's state"
        r.step(4)
        end = time.monotonic() + 60
        while not (isinstance(r.latest(), ComparisonFrame) and r.latest().step == N + 4 and not r.latest().running):
            assert time.monotonic() < end, "timed out"
            time.sleep(0.01)
        f = r.latest()
        assert [x.label for x in f.runs] == ["Adam lr=0.01", "SGD lr=0.05 · fresh at step 7",
                                             "Adam lr=0.003 · from the checkpoint's state"]
        wants = [plain_continue(path_copy, "Adam", {"lr": 0.01}, None, 4, load_state=True),
                 plain_continue(path_copy, "SGD", {"lr": 0.05}, None, 4, load_state=False),
                 plain_continue(path_copy, "Adam", {"lr": 0.003}, None, 4, load_state=True)]
        for rf, (model, _, _) in zip(f.runs, wants):
            for name, p in model.named_parameters():
                assert np.array_equal(rf.snapshot.tensor(name).value.values, p.detach().numpy()), (rf.label, name)
    finally:
        r.stop()


def test_a_file_mixing_a_resumed_run_with_one_from_step_0_is_refused_naming_it(adam_checkpoint, tmp_path):
    import io
    import zipfile

    from core.paths import LoadError
    _, s, _ = adam_checkpoint
    resumed_c = Comparison([RunSpec.from_branch(s, 0), config_run(s.spec, "SGD", {"lr": 0.05}, None)])
    resumed_c.run(4)
    plain = replace(s.spec, resume=None)
    from_0 = Comparison([RunSpec("", plain), config_run(plain, "SGD", {"lr": 0.05}, None)])
    from_0.run(N + 4)  # the same step, the same problem, but from step 0
    a, b = (zipfile.ZipFile(io.BytesIO(compare_file.pack(c))) for c in (resumed_c, from_0))
    path = tmp_path / "mixed.optimlab-compare"
    from core import files
    ta, tb = (files.torch_read(io.BytesIO(x.read("tensors.pt"))) for x in (a, b))
    with zipfile.ZipFile(path, "w") as z:
        for name in ("comparison.json", "cross.pt", "run0.json"):
            z.writestr(name, a.read(name))
        z.writestr("run1.json", b.read("run1.json"))
        z.writestr("tensors.pt", files.to_bytes({"run0": ta["run0"], "run1": tb["run1"]}))
    with pytest.raises((LoadError, SpecError), match=r"^mixed.optimlab-compare: .*it starts from step 0, "
                                                     r"the comparison from a checkpoint at step 7 \(ck.pt\)"):
        compare_file.load(path)
