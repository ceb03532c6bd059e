"""A headless run that is interrupted, times out or whose process dies says so in one line
and saves what it can (issue 8, item 8). The run happens in a supervised child process."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.cli import main

ROOT = Path(__file__).resolve().parents[2]

# a task script whose loss_fn does something on its CALL-th call (the first call is the open-time trial)
SCRIPT = '''
import os, pathlib, time, torch
calls = 0
def make_model():
    return torch.nn.Linear(1, 1)
def make_data():
    x = torch.linspace(-1, 1, 40).unsqueeze(1)
    return x[:32], 2 * x[:32], x[32:], 2 * x[32:]
def loss_fn(out, y):
    global calls
    calls += 1
    if calls == 2:
        pathlib.Path({started!r}).write_text("stepping")
    if calls == {call}:
        {action}
    return torch.nn.functional.mse_loss(out, y)
'''


def session(tmp_path, action="pass", call=-1) -> Path:
    (tmp_path / "task.py").write_text(SCRIPT.format(started=str(tmp_path / "STARTED"), call=call, action=action))
    doc = {"format": "optimlab-spec", "version": 1,
           "spec": {"optimizer": "SGD", "hparams": {"lr": 0.01}, "zero_grad_each_step": True,
                    "gradient": {"kind": "task", "task": {"kind": "script", "script": "task.py",
                                                          "eval_every": 1000000}}}}
    p = tmp_path / "s.json"
    p.write_text(json.dumps(doc))
    return p


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def saved_step(err: str) -> int:
    return int(err.split("step ")[1].split(";")[0].split(" ")[0])


def test_ctrl_c_stops_at_the_next_step_saves_and_exits_130(tmp_path):
    sess = session(tmp_path)
    params = tmp_path / "p.pt"
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "run", str(sess), "--steps", "100000000",
                             "--trust-script", "--save-params", str(params)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "STARTED").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "STARTED").exists(), proc.communicate(timeout=5)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl+C does: the whole process group
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "interrupted at step" in err and f"saved {params}" in err
    assert set(torch.load(params, weights_only=True)) == {"weight", "bias"}
    assert saved_step(err) >= 1


def test_timeout_stops_the_run_saves_and_exits_124(tmp_path, capsys):
    sess = session(tmp_path)
    params = tmp_path / "p.pt"
    code, out, err = cli(capsys, "run", sess, "--steps", 100_000_000, "--timeout", 4, "--trust-script",
                         "--save-params", params)
    assert code == 124 and len(err.splitlines()) == 1
    assert "--timeout 4 s reached at step" in err and f"saved {params}" in err
    assert params.exists()


def test_a_step_that_hangs_is_killed_after_the_timeout(tmp_path, capsys):
    sess = session(tmp_path, "time.sleep(1000)", call=5)
    t0 = time.monotonic()
    code, out, err = cli(capsys, "run", sess, "--steps", 100, "--timeout", 1, "--trust-script",
                         "--save-params", tmp_path / "p.pt")
    assert code == 124 and len(err.splitlines()) == 1, err
    assert "while a step was still running" in err and "nothing was saved" in err
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "p.pt").exists()


@pytest.mark.parametrize("action, word", [
    ("os._exit(0)", "exited with status 0 before finishing at step 2"),
    ("import ctypes; ctypes.string_at(0)", "was killed by SIGSEGV at step 2"),
    ("os.kill(os.getpid(), 9)", "was killed by SIGKILL at step 2"),
])
def test_a_run_process_that_dies_is_reported_in_one_line(tmp_path, capsys, action, word):
    sess = session(tmp_path, action, call=4)  # trial, then steps 1 and 2, then dies in step 3
    code, out, err = cli(capsys, "run", sess, "--steps", 10, "--trust-script", "--save-params", tmp_path / "p.pt")
    assert code == 1 and len(err.splitlines()) == 1, err
    assert word in err and "nothing was saved" in err
    assert not (tmp_path / "p.pt").exists()


def test_an_error_in_the_users_loss_is_one_line(tmp_path, capsys):
    sess = session(tmp_path, "raise KeyError('boom')", call=3)
    code, out, err = cli(capsys, "run", sess, "--steps", 10, "--trust-script")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "loss_fn failed: KeyError" in err and "Traceback" not in err
