"""The headless command line: replays the seed, loads and saves state, and refuses bad input
with status 2 and one line on stderr."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from core import catalogue, cli, session_file
from core.cli import main
from core.session import Session
from core.spec import loads

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "resources" / "examples" / "seed_walkthrough.json"
SEED_AFTER_51 = torch.tensor([[-1.0900, 0.4263], [-2.2953, -2.0455]])
SEED_AFTER_1 = torch.tensor([[-0.1947, 1.3217], [-1.4000, -1.1501]])


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def printed_tensor(out: str, name: str) -> torch.Tensor:
    """The tensor printed under ``name:`` by --print-state."""
    m = re.search(rf"^{re.escape(name)}:\ntensor\((\[.*?\])\)", out, re.S | re.M)
    assert m, out
    return torch.tensor(json.loads(m.group(1)))


def seed_spec_file(tmp_path, n_actions: int) -> Path:
    """The seed example with only its first ``n_actions`` journal actions."""
    doc = json.loads(SEED.read_text())
    doc["journal"] = doc["journal"][:n_actions]
    p = tmp_path / f"seed_{n_actions}.json"
    p.write_text(json.dumps(doc))
    return p


def direct_seed() -> Session:
    spec, journal = loads(SEED.read_text())
    return Session(spec, journal)


def test_run_seed_prints_the_walkthrough_numbers(capsys, tmp_path):
    code, out, err = run(capsys, "run", SEED, "--print-state", "--save-params", tmp_path / "p.pt",
                         "--save-optimizer", tmp_path / "o.pkl")
    assert code == 0 and err == ""
    assert "momentum_buffer': tensor([[0.0052, 0.0052],\n        [0.0052, 0.0052]])" in out
    assert out.startswith("step 51\n")
    exact = torch.load(tmp_path / "p.pt", weights_only=True)["weight"]
    assert torch.allclose(exact, SEED_AFTER_51, rtol=0, atol=1e-4)
    # printed to 4 decimals, exactly as plain PyTorch rounds them
    assert torch.equal(printed_tensor(out, "weight"), torch.round(exact, decimals=4))
    buf = torch.load(tmp_path / "o.pkl", weights_only=True)["state"][0]["momentum_buffer"]
    assert torch.allclose(buf, torch.full((2, 2), 0.9 ** 50), rtol=0, atol=1e-6)
    assert "weight2.grad:\nNone" in out  # weight2 never gets a gradient
    for section in ("optimizer.defaults:", "optimizer.state:", "optimizer.param_groups:"):
        assert section in out


def test_run_seed_first_step(capsys, tmp_path):
    code, out, _ = run(capsys, "run", seed_spec_file(tmp_path, 1), "--print-state")
    assert code == 0
    assert torch.allclose(printed_tensor(out, "weight"), SEED_AFTER_1, rtol=0, atol=1e-4)
    assert "momentum_buffer': tensor([[1., 1.]," in out


def test_module_entry_runs_the_seed_by_name():
    r = subprocess.run([sys.executable, "-m", "core.cli", "run", "seed_walkthrough", "--print-state"],
                       cwd=ROOT, capture_output=True, text=True, timeout=240,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 0, r.stderr
    assert "0.0052" in r.stdout
    assert torch.allclose(printed_tensor(r.stdout, "weight"), SEED_AFTER_51, rtol=0, atol=1.5e-4)


def _tensors(s: Session):
    return {n: p.detach() for n, p in s.params.items()}, s.optimizer.state_dict()


def _equal(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_save_load_and_steps_work_together(capsys, tmp_path):
    opt, params, sess = tmp_path / "opt.pt", tmp_path / "params.pth", tmp_path / "after.optimlab"
    code, out, _ = run(capsys, "run", "seed_walkthrough", "--save-optimizer", opt, "--save-params", params,
                       "--save-session", sess)
    assert code == 0 and "SGD: step 51" in out
    want = direct_seed()
    assert _equal(torch.load(opt, weights_only=True), want.optimizer.state_dict())
    want.step(5)

    # 1. reopen the saved session and step on
    code, out, _ = run(capsys, "run", sess, "--steps", 5, "--save-session", tmp_path / "more.optimlab")
    assert code == 0 and "SGD: step 56" in out
    assert _equal(_tensors(session_file.load_session(tmp_path / "more.optimlab")), _tensors(want))

    # 2. a session at another point (just after add_param_group) takes over the saved state, then steps
    code, out, _ = run(capsys, "run", seed_spec_file(tmp_path, 3), "--load-optimizer", opt, "--load-params", params,
                       "--steps", 5, "--save-optimizer", tmp_path / "opt2.pkl", "--save-params", tmp_path / "p2.pt",
                       "--save-session", tmp_path / "loaded.json")
    assert code == 0
    assert _equal(torch.load(tmp_path / "opt2.pkl", weights_only=True), want.optimizer.state_dict())
    assert _equal(torch.load(tmp_path / "p2.pt", weights_only=True), _tensors(want)[0])
    # the loads are in the journal, so the .json replays them
    replayed = session_file.load_session(tmp_path / "loaded.json")
    assert _equal(_tensors(replayed), _tensors(want))

    # 3. --save-checkpoint writes the "general checkpoint" layout
    code, _, _ = run(capsys, "run", "seed_walkthrough", "--save-checkpoint", tmp_path / "ck.pt")
    ck = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert code == 0 and {"model_state_dict", "optimizer_state_dict"} <= set(ck)


def _write_adam_state(path):
    w = torch.zeros(2, 2, requires_grad=True)
    opt = torch.optim.Adam([w])
    w.grad = torch.ones(2, 2)
    opt.step()
    torch.save(opt.state_dict(), path)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_bad_input_exits_2_with_one_line(capsys, tmp_path):
    (tmp_path / "bad.json").write_text("{ not json")
    (tmp_path / "notspec.json").write_text(json.dumps({"format": "optimlab-spec", "spec": {"optimizer": "SGD"}}))
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save(_Payload(tmp_path / "PWNED"), tmp_path / "evil.pkl")
    _write_adam_state(tmp_path / "adam.pt")
    good = tmp_path / "good.pt"
    torch.save(direct_seed().optimizer.state_dict(), good)
    (tmp_path / "trunc.pt").write_bytes(good.read_bytes()[:200])
    cases = [
        (["run", tmp_path / "nowhere.json"], "No such file"),
        (["run", "seed_walkthrough", "--load-optimizer", tmp_path / "nowhere.pt"], "No such file"),
        (["run", "seed_walkthrough", "--load-optimizer", tmp_path / "evil.pkl"], "not executed"),
        (["run", "seed_walkthrough", "--load-optimizer", tmp_path / "trunc.pt"], "torch.save"),
        (["run", "seed_walkthrough", "--load-optimizer", tmp_path / "list.pt"], "list"),
        (["run", "seed_walkthrough", "--load-optimizer", tmp_path / "adam.pt"], "Adam"),
        (["run", "seed_walkthrough", "--load-params", good], "parameters"),
        (["run", tmp_path / "bad.json"], "not valid JSON"),
        (["run", tmp_path / "notspec.json"], "no tensors"),
        (["run", "seed_walkthrough", "--steps", "-1"], "--steps"),
        (["run", "seed_walkthrough", "--steps", "many"], "invalid int"),
        (["run", "seed_walkthrough", "--bogus"], "--bogus"),
        (["frobnicate"], "frobnicate"),
        (["run", "two_moons"], "No such file or example: two_moons (the examples: adam_rosenbrock, digits_mlp, moons_mlp"),
        (["explain", "digit_mlp", "--tensor", "fc1.weight", "--index", "0,0"], "the examples: adam_rosenbrock"),
        (["export", "nowhere.optimlab"], "No such file: nowhere.optimlab"),
        (["run", "seed_walkthrough", "--save-optimizer", tmp_path / "no" / "such" / "dir" / "o.pt"], "does not exist"),
    ]
    for argv, word in cases:
        code, out, err = run(capsys, *argv)
        assert code == 2, (argv, out, err)
        lines = err.splitlines()
        assert len(lines) == 1, (argv, err)
        assert word in lines[0], (argv, err)
        assert "Traceback" not in err
    assert not (tmp_path / "PWNED").exists()


def test_optimizers_lists_all_of_torch_optim(capsys):
    code, out, _ = run(capsys, "optimizers")
    assert code == 0
    torch_part = out.split("\n== ")[0]  # the installed collections follow, each under its own heading
    assert torch_part.startswith("== torch.optim ==")
    listed = re.findall(r"^(\w+):", torch_part, re.M)
    want = ["Adadelta", "Adafactor", "Adagrad", "Adam", "Adamax", "AdamW", "ASGD", "LBFGS", "Muon", "NAdam",
            "RAdam", "RMSprop", "Rprop", "SGD", "SparseAdam"]
    assert sorted(listed) == sorted(want) == sorted(catalogue.optimizer_classes())
    assert len(listed) == 15
    assert "    lr = " in out


def test_examples_lists_seed_walkthrough(capsys):
    code, out, _ = run(capsys, "examples")
    assert code == 0
    assert re.search(r"^seed_walkthrough: The seed's walkthrough", out, re.M)


# ----- the timeline from the command line -----

def timeline_file(tmp_path) -> Path:
    """A session with two branches: branch 0 runs 40 steps; branch 1 forks from it at 15."""
    from core.spec import GradientSpec, SessionSpec, TensorSpec
    spec = SessionSpec(optimizer="Adam", hparams={"lr": 0.05}, zero_grad_each_step=True,
                       tensors=[TensorSpec("w", (3,), init="values", values=[1.0, -2.0, 0.5])],
                       gradient=GradientSpec("objective", objective="quadratic", condition=50.0))
    s = Session(spec)
    s.step(40)
    s.goto(15)
    s.step(10)
    path = tmp_path / "t.optimlab"
    session_file.save_session(s, path)
    return path


def test_branches_lists_the_timeline(capsys, tmp_path):
    code, out, err = run(capsys, "branches", timeline_file(tmp_path))
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()[1:]]
    assert rows[0][:4] == ["0", "0", "40", rows[0][3]] and rows[0][3] != ""
    assert rows[1][:5] == ["*1", "0", "15", "25", rows[1][4]]


def test_run_at_a_step_of_a_branch_equals_that_step(capsys, tmp_path):
    path = timeline_file(tmp_path)
    code, out, err = run(capsys, "run", path, "--branch", 0, "--at", 12, "--save-params", tmp_path / "p.pt")
    assert code == 0, err
    s = session_file.load_session(path)
    s.goto(12, 0)
    assert torch.equal(torch.load(tmp_path / "p.pt", weights_only=True)["w"], s.params["w"].detach())


def test_until_stops_at_the_first_step_where_the_condition_holds_and_saves_there(capsys, tmp_path):
    path = timeline_file(tmp_path)
    code, out, err = run(capsys, "run", path, "--steps", 1000, "--until", "step == 57", "--until", "loss <= 0",
                         "--save-params", tmp_path / "p.pt")
    assert code == 2 and "Cannot read the breakpoint 'loss <= 0'" in err  # refused before anything ran
    code, out, err = run(capsys, "run", path, "--steps", 1000, "--until", "step  ==  57",
                         "--save-params", tmp_path / "p.pt")
    assert code == 0, err
    assert out.splitlines()[0] == "stopped at step 57: step == 57"
    s = session_file.load_session(path)
    s.step(57 - s.step_count)
    assert torch.equal(torch.load(tmp_path / "p.pt", weights_only=True)["w"], s.params["w"].detach())
    code, out, err = run(capsys, "run", path, "--steps", 1000, "--until", "update_ratio[3] > 0.1")
    assert code == 2 and "update_ratio[3] names a group" in err


def test_a_branch_the_session_has_not_is_refused_naming_those_it_has(capsys):
    """It had said "There is no branch 7; there are 0"."""
    for argv in (("run", "seed_walkthrough", "--branch", 7), ("explain", "seed_walkthrough", "--tensor", "weight",
                                                              "--index", "0,0", "--branch", 7),
                 ("export", "seed_walkthrough", "--branch", 7)):
        code, out, err = run(capsys, *argv)
        assert code == 2 and err.strip() == "optimlab: There is no branch 7; it has branch 0", (argv, err)
    from core.timeline import branch_list
    assert branch_list([0, 1, 3]) == "it has branches 0, 1 and 3"


def test_until_a_value_falls_below_stops_at_the_first_step_below_it(capsys, tmp_path):
    """'loss < 0.001' (run until converged) had been refused: only '>' was understood."""
    code, out, err = run(capsys, "run", "adam_rosenbrock", "--steps", 5000, "--until", "loss < 0.001",
                         "--save-session", tmp_path / "s.optimlab")
    assert code == 0, err
    k = int(re.match(r"stopped at step (\d+): loss < 0.001$", out.splitlines()[0])[1])
    plain = Session(session_file.load_session(cli.resolve("adam_rosenbrock")).spec)  # the same steps, unwatched
    losses = []
    while plain.step_count < k:
        plain.step(1)
        losses.append(plain.loss_value())
    assert losses[-1] < 0.001 <= min(losses[:-1])  # the first step below, not one after it
    s = session_file.load_session(tmp_path / "s.optimlab")
    assert s.step_count == k and s.breakpoints[-1].text == "loss < 0.001"
    # the norms too, measured at every step while such a condition is on
    code, out, err = run(capsys, "run", "digits_mlp", "--steps", 3000, "--until", "grad_norm < 0.05",
                         "--save-session", tmp_path / "g.optimlab")
    assert code == 0 and out.startswith("stopped at step "), err
    h = session_file.load_session(tmp_path / "g.optimlab").history.view()
    assert h.bucket == 1
    after = h.step > 450  # the example's own steps came before the condition
    g, steps = h.grad_norm[after], h.step[after]
    assert g[-1] < 0.05 and (g[:-1] >= 0.05).all() and list(steps) == list(range(451, int(steps[-1]) + 1))


def test_measure_every_step_saves_a_session_whose_distributions_and_norms_have_every_step(capsys, tmp_path):
    from core.remeasure import first_unmeasured_dists, first_unmeasured_series
    plain, full = tmp_path / "plain.optimlab", tmp_path / "full.optimlab"
    code, out, _ = run(capsys, "run", "multi_group", "--steps", 300, "--save-session", plain)
    assert code == 0 and "Measured" not in out
    b = session_file.load_session(plain).timeline.branch
    assert first_unmeasured_dists(b.dists, 500) is not None  # the run measured within its budget
    code, out, _ = run(capsys, "run", "multi_group", "--steps", 300, "--measure-every-step", "--save-session", full)
    assert code == 0 and re.search(r"^Measured steps \d+-500 by replaying them", out, re.M), out
    assert "AdamW: step 500" in out
    s = session_file.load_session(full)
    b = s.timeline.branch
    assert first_unmeasured_dists(b.dists, 500) is None and first_unmeasured_series(b.series, 500) is None
    steps, _, counts = s.distribution("weight", "exp_avg")
    assert list(steps) == list(range(1, 501)) and counts.sum(axis=1).min() > 0
