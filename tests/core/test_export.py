"""Export: a session becomes a plain PyTorch script that, run by itself in a fresh interpreter
(no optimlab importable), reproduces the session bit for bit, says so, and gives the same
parameters and optimizer state as ``optimlab run``."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core import session_file
from core.cli import example_paths, main
from core.engine import copy_state
from core.export import export_script, write_script
from core.session import Session
from core.spec import (AddGroup, EditTensor, GradientSpec, ManualGrad, SchedulerSpec, SessionSpec, SetDevice,
                       SetGrad, SetHparam, Step, TensorSpec, ZeroGrad)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "resources" / "examples"
# run the script as `python -I script.py`, with optimlab's packages made unimportable
BLOCKER = ("import runpy, sys; sys.modules.update(core=None, app=None, widgets=None, resources=None); "
           "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
# One torch thread in the sessions replayed here and in the scripts: results do not depend on it as
# long as both sides use the same count, and on a busy machine a second thread makes replays far slower.
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}, "OMP_NUM_THREADS": "1"}


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run_plain(script: Path, out_dir: Path) -> tuple[str, dict, dict]:
    """Run ``script`` in a fresh isolated interpreter from ``out_dir``; its stdout and what it saved."""
    params, opt = out_dir / "script_params.pt", out_dir / "script_optimizer.pt"
    r = subprocess.run([sys.executable, "-I", "-c", BLOCKER, str(script), str(params), str(opt)], cwd=out_dir,
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout, torch.load(params, weights_only=True), torch.load(opt, weights_only=True)


def run_cli(session: Path, out_dir: Path, capsys) -> tuple[dict, dict]:
    params, opt = out_dir / "cli_params.pt", out_dir / "cli_optimizer.pt"
    code = main(["run", str(session), "--save-params", str(params), "--save-optimizer", str(opt)])
    assert code == 0, capsys.readouterr().err
    return torch.load(params, weights_only=True), torch.load(opt, weights_only=True)


def assert_same_state(a, b, where="") -> None:
    """Equal structures with torch.equal tensors (same dtype and shape)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def script_task(tmp_path, script: str, optimizer: str, hparams: dict, steps: int) -> Path:
    doc = {"format": "optimlab-spec", "version": 1,
           "spec": {"optimizer": optimizer, "hparams": hparams, "zero_grad_each_step": True,
                    "gradient": {"kind": "task", "task": {"kind": "script", "script": str(EXAMPLES / script),
                                                          "batch_size": 32, "eval_every": 5, "seed": 2}}},
           "journal": [{"op": "step", "n": steps}]}
    p = tmp_path / f"{Path(script).stem}.json"
    p.write_text(json.dumps(doc))
    return p


def every_action_session(tmp_path) -> Path:
    """A saved session whose journal holds every kind of action."""
    spec = SessionSpec(optimizer="Adam", hparams={"lr": 0.01}, seed=7,
                       tensors=(TensorSpec("w", (3, 4), init="normal", grad=ManualGrad(fill="normal")),
                                TensorSpec("b", (4,), init="values", values=[0.5, -1.0, 2.0, 0.0],
                                           grad=ManualGrad(fill="constant", value=0.5))),
                       gradient=GradientSpec(kind="manual", when="once"), set_to_none=False)
    s = Session(spec, [Step(3)])
    saved = copy_state(s.optimizer.state_dict())
    s.apply(ZeroGrad(set_to_none=False))
    s.apply(SetGrad("w", ManualGrad(fill="normal", std=0.5)))
    s.apply(SetGrad("b", ManualGrad(fill="values", values=[1.0, 2.0, 3.0, 4.0], sparse=False)))
    s.step(2)
    s.apply(AddGroup((TensorSpec("c", (2, 2), init="uniform", grad=ManualGrad(fill="constant", value=0.3)),),
                     {"lr": 0.05, "amsgrad": True}))
    s.apply(SetHparam(0, "lr", 0.02))
    s.apply(SetHparam(1, "betas", (0.8, 0.9)))
    s.step(2)
    s.apply(EditTensor("w", "value", (0, 1), 0.25))
    s.apply(EditTensor("w", "exp_avg", (1, 0), 0.125))
    s.apply(EditTensor("b", "grad", None, -0.5))
    s.apply(SetDevice("cpu"))
    s.step(1)
    saved["param_groups"].append({**s.optimizer.state_dict()["param_groups"][1]})
    saved["state"][2] = copy_state(s.optimizer.state_dict()["state"][2])
    s.load_optimizer_state(saved, "rolled_back.pt")
    s.load_params({"w": torch.full((3, 4), 0.75), "b": torch.arange(4.0), "c": torch.eye(2)}, "params.pt")
    s.apply(SetGrad("b", None))
    s.step(3)
    actions = {type(a).__name__ for a in s.journal}
    assert actions == {"Step", "ZeroGrad", "SetGrad", "AddGroup", "SetHparam", "LoadOptimizer", "LoadParams",
                       "EditTensor", "SetDevice"}
    p = tmp_path / "every_action.optimlab"
    session_file.save_session(s, p)
    return p


CASES = [*example_paths(), "script_xor", "script_sine", "every_action"]


def session_path(name: str, tmp_path) -> Path:
    if name in example_paths():
        return example_paths()[name]
    if name == "script_xor":
        return script_task(tmp_path, "script_xor_classifier.py", "Adam", {"lr": 0.01}, 12)
    if name == "script_sine":
        return script_task(tmp_path, "script_sine_regression.py", "SGD", {"lr": 0.05, "momentum": 0.9}, 9)
    return every_action_session(tmp_path)


def test_the_cases_cover_every_shipped_example():
    assert {p.stem for p in EXAMPLES.glob("*.json")} <= set(CASES)
    assert {"seed_walkthrough", "digits_mlp", "moons_mlp", "sparse_adam", "multi_group", "adam_rosenbrock"} <= set(CASES)


ALONE = ("seed_walkthrough", "every_action")  # run exactly as a user would: `python -I script.py`


@pytest.mark.timeout(600)
def test_every_example_and_every_action_reproduces_in_a_plain_interpreter(tmp_path, capsys, one_thread):
    scripts = {}
    for name in CASES:
        folder = tmp_path / name
        folder.mkdir()
        session = session_file.load_session(session_path(name, folder))  # the one replay here
        saved = folder / f"{name}.optimlab"  # `optimlab run` reopens it where it stood, without replay
        session_file.save_session(session, saved)
        script = write_script(session, folder / f"{name}.py")[0]
        assert not re.search(r"^\s*(import|from)\s+(core|app|widgets|resources)\b", script.read_text(), re.M)
        scripts[name] = (saved, script)
    runs = {name: run_plain(scripts[name][1], scripts[name][1].parent) for name in ALONE}
    # the others in one more fresh interpreter (one torch import), each script in fresh globals
    rest = [n for n in CASES if n not in ALONE]
    for name, out in zip(rest, _run_many([scripts[n][1] for n in rest], tmp_path, save=True)):
        script = str(scripts[name][1])
        runs[name] = (out, torch.load(script + ".params.pt", weights_only=True),
                      torch.load(script + ".optimizer.pt", weights_only=True))
    for name, (stdout, params, optimizer) in runs.items():
        assert stdout.strip().splitlines()[-1] == "reproduced", (name, stdout)
        cli_params, cli_optimizer = run_cli(scripts[name][0], scripts[name][1].parent, capsys)
        assert_same_state(params, cli_params, f"{name}: params")
        assert_same_state(optimizer, cli_optimizer, f"{name}: optimizer state")


def test_the_seed_walkthrough_exports_to_its_section_3(tmp_path):
    s = session_file.load_session(EXAMPLES / "seed_walkthrough.json")
    text = export_script(s).text
    expected = [
        "weight = torch.tensor([[-0.0947, 1.4217], [-1.3, -1.0501]]).requires_grad_(True)",
        "weight.grad = torch.ones((2, 2))",
        "optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9)",
        "optimizer.step()",
        "optimizer.zero_grad(set_to_none=False)",
        "weight2 = torch.tensor([[-1.7869, 2.1294, -0.1307], [0.6809, -0.0193, -0.5704], "
        "[-0.5512, -2.5028, 0.2141]]).requires_grad_(True)",
        "optimizer.add_param_group({\"params\": [weight2], 'lr': 0.0001, 'nesterov': True})",
        "for _ in range(50):",
        "    optimizer.step()",
    ]
    lines = text.splitlines()
    at = [lines.index(e) for e in expected]
    assert at == sorted(at), text
    assert "def step" not in text  # nothing happens between the seed's steps but optimizer.step()


def _run_many(scripts: list[Path], cwd: Path, save: bool = False) -> list[str]:
    """Run several exported scripts one after another in one fresh interpreter (one torch import), each
    in fresh globals; with ``save``, each saves its params and optimizer state beside itself."""
    code = ("import contextlib, io, sys\nsys.modules.update(core=None, app=None, widgets=None, resources=None)\n"
            "for path in sys.argv[1:]:\n"
            "    sys.argv = [path, path + '.params.pt', path + '.optimizer.pt'] if SAVE else [path]\n"
            "    buf = io.StringIO()\n    try:\n        with contextlib.redirect_stdout(buf):\n"
            "            exec(compile(open(path).read(), path, 'exec'), {'__name__': '__main__', '__file__': path})\n"
            "    except SystemExit:\n        pass\n    print(repr(buf.getvalue()))\n").replace("SAVE", str(save))
    r = subprocess.run([sys.executable, "-I", "-c", code, *map(str, scripts)], cwd=cwd, env=ENV, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return [eval(line) for line in r.stdout.splitlines()]  # noqa: S307 - our own repr() lines


def _objective(optimizer, hparams, steps, scheduler=None, names=("xy",), shape=(2,), **kw):
    spec = SessionSpec(optimizer=optimizer, hparams=hparams, scheduler=scheduler, zero_grad_each_step=True,
                       tensors=tuple(TensorSpec(n, shape, init="uniform") for n in names),
                       gradient=GradientSpec(kind="objective", objective=kw.get("objective", "rosenbrock")), seed=5)
    return Session(spec, [Step(steps)])


def test_more_kinds_of_sessions_reproduce(tmp_path, one_thread):
    built = {
        "plateau": _objective("SGD", {"lr": 0.001}, 30, SchedulerSpec("ReduceLROnPlateau", {"patience": 2})),
        "lbfgs_wolfe": _objective("LBFGS", {"line_search_fn": "strong_wolfe", "max_iter": 5}, 4),
        "lbfgs": _objective("LBFGS", {"lr": 0.1}, 3, objective="quadratic", shape=(3, 2)),
        "odd_names": _objective("RMSprop", {"lr": 0.01}, 6, SchedulerSpec("StepLR", {"step_size": 2}, "step"),
                                names=("layer.0", "class", "params"), objective="quadratic", shape=(2,)),
    }
    every = Session(SessionSpec(optimizer="SGD", hparams={"lr": 0.1, "momentum": 0.5}, seed=9,
                                tensors=(TensorSpec("a", (2, 3), grad=ManualGrad(fill="normal")),),
                                gradient=GradientSpec(kind="manual", when="every_step")), [Step(2)])
    every.apply(AddGroup((TensorSpec("d", (3,), grad=ManualGrad(fill="normal", std=2.0)),), {"lr": 0.01}))
    every.step(3)  # step() now draws d's gradient too
    built["every_step_grads"] = every
    rewound = _objective("Adam", {"lr": 0.05}, 20)
    rewound.goto(8)
    built["rewound"] = rewound
    scripts = []
    for name, s in built.items():
        scripts.append(tmp_path / f"{name}.py")
        write_script(s, scripts[-1])
    assert "odd_names" and "layer_0 = " in scripts[3].read_text()
    assert scripts[4].read_text().count("def step():") == 2
    outputs = _run_many(scripts, tmp_path)
    for name, out in zip(built, outputs):
        assert out.strip().splitlines()[-1] == "reproduced", (name, out)
    assert "for _ in range(8):" in scripts[-1].read_text()  # up to where the session stands


def test_another_branch_exports_to_its_head_and_a_changed_result_is_reported(tmp_path, one_thread):
    s = _objective("Adam", {"lr": 0.05}, 10)
    s.goto(4)
    s.apply(SetHparam(0, "lr", 0.2))
    s.step(2)  # branch 1: forked at step 4
    root = tmp_path / "root.py"
    write_script(s, root, branch=0)
    assert "for _ in range(10):" in root.read_text()
    fork = tmp_path / "fork.py"
    write_script(s, fork)
    text = fork.read_text()
    assert "optimizer.param_groups[0]['lr'] = 0.2" in text
    tampered = tmp_path / "tampered.py"
    tampered.write_text(text.replace("optimizer.param_groups[0]['lr'] = 0.2", "optimizer.param_groups[0]['lr'] = 0.21"))
    outs = _run_many([root, fork, tampered], tmp_path)
    assert [o.strip().splitlines()[-1] for o in outs[:2]] == ["reproduced", "reproduced"]
    assert outs[2].startswith("differs from the session: ") and "param xy" in outs[2] and "param_groups[0]" in outs[2]


def test_a_large_stored_state_dict_goes_beside_the_script(tmp_path, one_thread):
    spec = SessionSpec(optimizer="Adam", tensors=(TensorSpec("big", (300, 300), grad=ManualGrad()),))
    s = Session(spec, [Step(2)])
    s.load_params({"big": torch.full((300, 300), 0.5)}, "half.pt")
    s.step(1)
    written = write_script(s, tmp_path / "big.py")
    assert len(written) == 2 and written[1].name.startswith("big.params-") and written[1].suffix == ".pt"
    assert "file:big.params-" in written[0].read_text()
    assert _run_many([written[0]], tmp_path)[0].strip().endswith("reproduced")


def test_cli_export_prints_or_writes_and_refuses_bad_input(tmp_path, capsys):
    assert main(["export", "adam_rosenbrock"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith('"""Adam on the Rosenbrock valley') and "for _ in range(400):" in out and not err
    target = tmp_path / "rosen.py"
    assert main(["export", "adam_rosenbrock", "-o", str(target)]) == 0
    assert target.read_text() == out.replace("exported.py", "rosen.py")
    assert main(["export", "adam_rosenbrock", "--branch", "3"]) == 2
    assert "no branch 3" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_script_task_needs_trust_to_export(tmp_path, capsys):
    own = tmp_path / "own_task.py"
    own.write_text((EXAMPLES / "script_sine_regression.py").read_text())
    doc = {"format": "optimlab-spec", "version": 1,
           "spec": {"optimizer": "SGD", "gradient": {"kind": "task", "task": {"kind": "script", "script": str(own)}}},
           "journal": [{"op": "step", "n": 2}]}
    session = tmp_path / "own.json"
    session.write_text(json.dumps(doc))
    try:
        assert main(["export", str(session)]) == 2
        err = capsys.readouterr().err
        assert "--trust-script" in err and err.count("\n") == 1
        assert main(["export", str(session), "--trust-script"]) == 0
        assert f"TASK_SCRIPT = beside({str(own)!r})" in capsys.readouterr().out
    finally:
        from core import trust
        trust.forget()


def test_an_exported_folder_moved_elsewhere_still_reproduces_with_the_files_beside_the_script(tmp_path, one_thread):
    """The script finds the task script (and the digits) beside itself before the paths they had at export."""
    import shutil

    from core import datasets, trust
    folder = tmp_path / "exported"
    folder.mkdir()
    own = folder / "sine_task.py"
    own.write_text((EXAMPLES / "script_sine_regression.py").read_text())
    trust.trust_file(str(own))
    try:
        spec = json.loads(script_task(folder, "script_sine_regression.py", "Adam", {"lr": 0.01}, 6).read_text())
        spec["spec"]["gradient"]["task"]["script"] = str(own)
        session = session_file.load_session(_write(folder / "sine.json", spec))
        script = write_script(session, folder / "sine.py")[0]
    finally:
        trust.forget()
    header = script.read_text().split("import ", 1)[0]
    assert "# Needs these files" in header
    assert f"#   sine_task.py  (your task script; at export: {str(own)!r})" in header
    moved = shutil.move(str(folder), str(tmp_path / "sent_elsewhere"))
    assert not own.exists()
    stdout, params, _ = run_plain(Path(moved) / "sine.py", Path(moved))
    assert stdout.strip().splitlines()[-1] == "reproduced"
    assert_same_state(params, {n: p.detach() for n, p in session.params.items()}, "params")

    digits = session_file.load_session(example_paths()["digits_mlp"])
    (tmp_path / "digits").mkdir()
    script = write_script(digits, tmp_path / "digits" / "digits.py")[0]
    assert "#   digits.npz  (the 8x8 digits shipped with optimlab" in script.read_text().split("import ", 1)[0]
    with np.load(datasets.DIGITS_PATH) as z:  # a different copy beside the script is the one it reads
        np.savez(script.with_name("digits.npz"), images=z["images"][::-1], labels=z["labels"][::-1])
    r = subprocess.run([sys.executable, "-I", "-c", BLOCKER, str(script)], cwd=script.parent, env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert "differs from the session" in r.stdout, r.stdout + r.stderr


def _write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_the_thread_count_line_reads_as_english(one_thread):
    s = session_file.load_session(EXAMPLES / "seed_walkthrough.json")
    text = export_script(s).text
    assert "torch.set_num_threads(1)  # the branch ran with 1 thread (a CPU reduction" in text


def test_a_saved_comparisons_configuration_exports_to_a_script_that_reproduces_it(tmp_path, capsys, one_thread):
    """`optimlab export COMPARISON --run N`: configuration N as a plain script; run in a fresh
    interpreter it ends on the run's parameters and optimizer state and prints `reproduced`. Without
    --run, or with a run it has not, one sentence lists the configurations."""
    from core import compare_file
    from core.compare import Comparison, RunSpec, config_spec
    base = session_file.load_session(EXAMPLES / "adam_rosenbrock.json").spec
    runs = [RunSpec("", config_spec(base, "Adam", {"lr": 0.01}, None)),
            RunSpec("", config_spec(base, "SGD", {"lr": 0.001, "momentum": 0.9},
                                    SchedulerSpec("StepLR", {"step_size": 5, "gamma": 0.5})))]
    c = Comparison(runs)
    c.run(30)
    saved = tmp_path / "c.optimlab-compare"
    compare_file.save(c, saved)
    code = main(["export", str(saved), "--run", "1", "-o", str(tmp_path / "sgd.py")])
    assert code == 0, capsys.readouterr().err
    stdout, params, opt = run_plain(tmp_path / "sgd.py", tmp_path)
    assert stdout.strip().splitlines()[-1] == "reproduced"
    sgd = c.runs[1].session
    assert_same_state(params, {n: p.detach() for n, p in sgd.params.items()}, "params")
    assert_same_state(opt["state"], sgd.optimizer.state_dict()["state"], "state")
    for argv, words in ((["export", str(saved)], "holds 2 configurations (0: Adam"),
                        (["export", str(saved), "--run", "2"], "it has no run 2"),
                        (["export", "seed_walkthrough", "--run", "0"], "--run picks a configuration")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
