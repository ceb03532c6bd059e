"""Export of a resumed session: a plain PyTorch script that loads the checkpoint's data from a
file beside itself (weights_only), stands at the checkpoint's step (weights, optimizer and
scheduler state, data order, torch's generator), replays what the session did from there, prints
``reproduced``, and gives the same parameters and optimizer state as ``optimlab run``.

The checkpoints are written by test_resume's plain training loop (the task's documented rules),
resumed with ``optimlab resume``, exported with ``optimlab export -o`` and run with a plain
interpreter in a fresh process where optimlab cannot be imported."""
import json
from pathlib import Path

import torch

from core import cli, edits, trust
from core import spec as specmod
from core.export import write_script
from core.tasks import task_seeds
from tests.core.test_export import _run_many, assert_same_state, run_cli
from tests.core.test_resume import CASES, DROPOUT_SCRIPT, TASK, plain_run, session_spec


def resume_cli(folder, checkpoint, task: str, steps: int, *extra) -> Path:
    """``optimlab resume CHECKPOINT --task TASK --steps K -o resumed.optimlab``; the saved session."""
    out = folder / "resumed.optimlab"
    assert cli.main(["resume", str(checkpoint), "--task", task, "--steps", str(steps), "-o", str(out), *extra]) == 0
    return out


def spec_file(folder, case: str) -> str:
    optimizer, hparams, sched = CASES[case]
    p = folder / "task.json"
    p.write_text(json.dumps(specmod.document(session_spec(optimizer, hparams, sched))))
    return str(p)


def export_and_run(sessions: dict, capsys, *extra) -> dict:
    """Export each session with the CLI (beside it), run the scripts in one fresh plain interpreter
    (one torch import), check each printed ``reproduced`` and saved what ``optimlab run SESSION``
    saves (torch.equal). Returns name -> (script text, saved params, saved optimizer state)."""
    scripts = []
    for session in sessions.values():
        scripts.append(session.with_name("resumed_run.py"))
        assert cli.main(["export", str(session), "-o", str(scripts[-1]), *extra]) == 0
        assert "resumed_run.checkpoint.pt" in capsys.readouterr().out  # the checkpoint's data, written beside
    outputs = _run_many(scripts, scripts[0].parent, save=True)
    out = {}
    for (name, session), script, stdout in zip(sessions.items(), scripts, outputs):
        assert stdout.strip().splitlines()[-1] == "reproduced", (name, stdout)
        params, opt = (torch.load(f"{script}.{what}.pt", weights_only=True) for what in ("params", "optimizer"))
        cli_params, cli_opt = run_cli(session, session.parent, capsys)
        assert_same_state(params, cli_params, f"{name} params")
        assert_same_state(opt, cli_opt, f"{name} optimizer")
        out[name] = script.read_text(), params, opt
    return out


def test_adam_with_steplr_at_an_epochs_end_or_mid_epoch_and_sgd_with_momentum_export_scripts_that_reproduce_them(
        tmp_path, capsys):
    """Resumed at step 6 (an epoch's end: 3 steps an epoch) or 7 (one batch into the third epoch),
    run on to 13; the scripts' results are the plain training loop's too."""
    m, runs, sessions = 13, {}, {}
    for case, n in (("adam_steplr", 6), ("adam_steplr", 7), ("sgd_momentum", 7)):
        folder = tmp_path / f"{case}_{n}"
        folder.mkdir()
        runs[folder.name] = plain_run(*CASES[case], m, save_at=n, path=folder / "ck.pt")
        sessions[folder.name] = resume_cli(folder, folder / "ck.pt", spec_file(folder, case), m - n)
    done = export_and_run(sessions, capsys)
    for name, (model, opt, _) in runs.items():
        text, params, saved = done[name]
        for p_name, p in model.named_parameters():
            assert torch.equal(params[p_name], p.detach()), (name, p_name)
        assert_same_state(saved["state"], opt.state_dict()["state"], f"{name} state")
        n = int(name.rsplit("_", 1)[1])
        assert f"# ----- resumed at step {n:,} from the checkpoint ck.pt -----" in text
        assert f"for _ in range({m - n}):" in text  # replayed from the checkpoint's step, not from 0
    assert 'scheduler.load_state_dict(checkpoint["scheduler"])' in done["adam_steplr_6"][0]
    assert "scheduler" not in done["sgd_momentum_7"][0]  # neither in the spec nor in the checkpoint
    assert "set_rng_state" not in done["sgd_momentum_7"][0]


def test_the_shipped_digits_example_resumed_through_the_cli_exports_a_script_that_reproduces_it(tmp_path, capsys):
    """Two groups, weight decay on the weights only, StepLR once an epoch (45 steps), resumed
    five batches into the second epoch."""
    spec, _ = specmod.loads((cli.EXAMPLES / "digits_mlp.json").read_text())
    groups = [(g.tensors, dict(g.hparams)) for g in spec.groups]
    sched = (spec.scheduler.name, dict(spec.scheduler.params), "epoch")
    checkpoint = tmp_path / "ck.pt"
    model, opt, _ = plain_run("SGD", dict(spec.hparams), sched, 100, save_at=50, path=checkpoint,
                              task=spec.gradient.task, groups=groups)
    session = resume_cli(tmp_path, checkpoint, "digits_mlp", 50)
    ((text, params, _),) = export_and_run({"digits": session}, capsys).values()
    for name, p in model.named_parameters():
        assert torch.equal(params[name], p.detach()), name
    assert "digits.npz" in text.split("import ", 1)[0]  # the header lists both files it reads


def test_a_checkpoint_with_torchs_generator_is_exported_with_it_so_dropout_draws_the_same_masks(tmp_path, capsys):
    """A task script with dropout: only the generator state the checkpoint carries makes the
    steps after it equal; the script sets it after building everything, as the engine does."""
    import runpy
    task = tmp_path / "task.py"
    task.write_text(DROPOUT_SCRIPT)
    ns = runpy.run_path(str(task))
    seeds, bs, n = task_seeds(3), 8, 3  # 30 samples: 4 batches an epoch; saved within the first
    torch.manual_seed(seeds.data)
    train_x, train_y, _, _ = ns["make_data"]()
    torch.manual_seed(seeds.init)
    model = ns["make_model"]()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seeds.order))
    torch.manual_seed(99)  # the run's own generator state: only the checkpoint tells it
    for i in range(n):
        idx = order[i * bs:(i + 1) * bs]
        opt.zero_grad()
        ns["loss_fn"](model(train_x[idx]), train_y[idx]).backward()
        opt.step()
    checkpoint = tmp_path / "ck.pt"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "iteration": n,
                "rng_state": torch.random.get_rng_state()}, checkpoint)
    trust.forget()
    try:
        session = resume_cli(tmp_path, checkpoint, str(task), 6, "--batch-size", str(bs), "--seed", "3",
                             "--trust-script")
        trust.trust_file(str(task))  # as the window's consent does, for optimlab run's side of the check
        ((text, _, _),) = export_and_run({"dropout": session}, capsys).values()
    finally:
        trust.forget()
    assert 'torch.random.set_rng_state(checkpoint["rng"])' in text
    assert text.index("set_rng_state") > text.index("optimizer.load_state_dict")


def test_another_optimizer_from_the_checkpoints_step_and_an_unshuffled_task_export_scripts_that_reproduce_them(
        tmp_path):
    """Branch 1 tries SGD from the checkpoint's step (the checkpoint's weights, data position and
    generator; a fresh optimizer): its script loads no optimizer state. A task without shuffling
    stands at the step in the plain order. Each script, and branch 0's, prints ``reproduced``."""
    from dataclasses import replace

    from core.resume import resume_spec
    from core.session import Session
    checkpoint = tmp_path / "ck.pt"
    plain_run(*CASES["adam_steplr"], 7, save_at=7, path=checkpoint)
    r = resume_spec(session_spec(*CASES["adam_steplr"]), checkpoint)
    tried = Session(r.spec, blobs=r.blobs)
    tried.run(3)
    tried = edits.with_optimizer(tried, "SGD")
    tried.run(4)
    assert (tried.timeline.current, tried.spec.resume.optimizer_state) == (1, False)
    unshuffled = resume_spec(session_spec("Adam", {"lr": 0.01}, None, task=replace(TASK, shuffle=False)), checkpoint)
    plain_order = Session(unshuffled.spec, blobs=unshuffled.blobs)
    plain_order.run(5)
    sessions = {"sgd_tried": (tried, None), "adam_branch": (tried, 0), "unshuffled": (plain_order, None)}
    paths = [write_script(s, tmp_path / f"{name}.py", branch)[0] for name, (s, branch) in sessions.items()]
    # File > Export as PyTorch script: what the window sends to the runner, for the current branch
    assert edits.export_script(tried, paths[0]) == [str(paths[0]), str(tmp_path / "sgd_tried.checkpoint.pt")]
    scripts = {name: p.read_text() for name, p in zip(sessions, paths)}
    outputs = _run_many(paths, tmp_path, save=True)
    for name, out in zip(scripts, outputs):
        assert out.strip().splitlines()[-1] == "reproduced", (name, out)
    saved = torch.load(f"{paths[0]}.params.pt", weights_only=True)
    assert_same_state(saved, {n: p.detach() for n, p in tried.params.items()}, "params")
    assert "optimizer.load_state_dict" not in scripts["sgd_tried"]
    assert "optimizer.load_state_dict" in scripts["adam_branch"]
    assert "order = torch.arange(n_train)" in scripts["unshuffled"]


def test_printing_a_resumed_sessions_script_without_its_checkpoint_file_is_refused_in_one_line(tmp_path, capsys):
    checkpoint = tmp_path / "ck.pt"
    plain_run(*CASES["sgd_momentum"], 3, save_at=3, path=checkpoint)
    session = resume_cli(tmp_path, checkpoint, spec_file(tmp_path, "sgd_momentum"), 1)
    capsys.readouterr()
    assert cli.main(["export", str(session)]) == 2
    out, err = capsys.readouterr()
    assert not out and err.count("\n") == 1 and "exported.checkpoint.pt" in err and "-o" in err, err


BATCHNORM_SCRIPT = '''
import torch
from torch import nn


def make_data():
    x = torch.randn(40, 3) * 2 + 1
    y = x.sum(1, keepdim=True).sin()
    return x[:32], y[:32], x[32:], y[32:]


def make_model():
    return nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 1))


def loss_fn(output, target):
    return nn.functional.mse_loss(output, target)
'''

# run an exported script in a fresh plain interpreter (saving params and optimizer state), then save
# its model's buffers too
BUFFERS = ("import sys, runpy, torch; sys.modules.update(core=None, app=None, widgets=None, resources=None); "
           "out = sys.argv.pop(); sys.argv = sys.argv[1:]; g = runpy.run_path(sys.argv[0], run_name='__main__'); "
           "torch.save(dict(g['model'].named_buffers()), out)")


def test_a_checkpoints_buffers_are_loaded_by_the_script_as_the_session_loads_them(tmp_path, capsys):
    """BatchNorm's running statistics come from the checkpoint (the parameters do not depend on
    them in training mode, so the check of ``reproduced`` alone would not see them)."""
    import runpy
    import subprocess
    import sys

    from core import session_file
    from tests.core.test_export import ENV
    task = tmp_path / "task.py"
    task.write_text(BATCHNORM_SCRIPT)
    ns = runpy.run_path(str(task))
    seeds = task_seeds(0)
    torch.manual_seed(seeds.data)
    x, y, _, _ = ns["make_data"]()
    torch.manual_seed(seeds.init)
    model = ns["make_model"]()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for i in range(4):  # not the task's data order: only the running statistics matter here
        opt.zero_grad()
        ns["loss_fn"](model(x[i * 8:(i + 1) * 8]), y[i * 8:(i + 1) * 8]).backward()
        opt.step()
    checkpoint = tmp_path / "ck.pt"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 4}, checkpoint)
    script = tmp_path / "resumed_run.py"
    trust.forget()
    try:
        session = resume_cli(tmp_path, checkpoint, str(task), 3, "--batch-size", "8", "--trust-script")
        trust.trust_file(str(task))
        assert cli.main(["export", str(session), "-o", str(script)]) == 0
        cli_params, cli_opt = run_cli(session, tmp_path, capsys)
        want = dict(session_file.load_session(session).engine.task.model.named_buffers())
    finally:
        trust.forget()
    assert "model.get_buffer(name).copy_(value)" in script.read_text()
    saved = [tmp_path / f"script_{what}.pt" for what in ("params", "optimizer", "buffers")]
    r = subprocess.run([sys.executable, "-I", "-c", BUFFERS, str(script), *map(str, saved)],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("reproduced"), r.stdout + r.stderr
    params, opt_state, buffers = (torch.load(p, weights_only=True) for p in saved)
    assert_same_state(params, cli_params, "params")
    assert_same_state(opt_state, cli_opt, "optimizer")
    assert_same_state(buffers, want, "buffers")
    assert int(want["1.num_batches_tracked"]) == 7  # the checkpoint's 4 batches and the session's 3
