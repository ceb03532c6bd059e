"""A real two-process torch.distributed run (gloo, CPU) watched from a listener."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.checkpoints import open_checkpoint
from core.listen import Listener

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("ddp_script.py")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until(cond, seconds=60.0, what="condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _steps(out: Path) -> list[int]:
    def read(r):
        try:
            return int((out / f"rank{r}.step").read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0
    return [read(0), read(1)]


@pytest.fixture
def ddp_run(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIMLAB_RUNTIME_DIR", str(tmp_path / "run"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPTIMLAB_RUNTIME_DIR=str(tmp_path / "run"))
    port = str(_port())
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), str(r), "2", port, str(tmp_path)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in range(2)]
    yield tmp_path, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)


def test_ddp_run_streams_from_rank_0_pauses_every_rank_at_one_step_and_its_dcp_checkpoint_opens_by_name(ddp_run):
    out, procs = ddp_run
    address = _until(lambda: (out / "address").exists() and (out / "address").read_text(), what="rank 0's address")
    with Listener(address) as lst:
        frame = lst.next_frame(timeout=60)
        assert frame is not None and frame.run_id == "ddp" and frame.optimizer == "SGD"
        assert [t.name for t in frame.tensors] == ["0.weight", "0.bias", "2.weight", "2.bias"]
        assert set(frame.tensors[0].state) == {"momentum_buffer"}

        lst.pause()
        held = _until(lambda: lst.status()["held_at"], what="the pause")
        # the hold is inside optimizer.step() of step `held` (its post-hook): the script writes
        # its count after step() returns, so a held rank shows held - 1
        _until(lambda: _steps(out) == [held - 1, held - 1], what=f"both ranks in step {held}")
        time.sleep(0.5)  # a rank that was not held would have moved on by now
        assert _steps(out) == [held - 1, held - 1]
        paused = _until(lambda: (f := lst.latest()) is not None and f.step == held and not f.running and f,
                        what="the paused frame")
        assert paused.tensors[0].value.exact

        lst.step(2)
        _until(lambda: lst.status()["held_at"] == held + 2, what="two more steps")
        _until(lambda: _steps(out) == [held + 1, held + 1], what="both ranks two steps on")
        stop_at = held + 5
        (out / "stop_at").write_text(str(stop_at))
        lst.resume()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
    assert _steps(out) == [stop_at, stop_at]

    ref = torch.load(out / "ref.pt", weights_only=True)
    info = open_checkpoint(out / "dcp")
    assert info.format == "torch.distributed.checkpoint"
    (opt,) = info.optimizers
    assert [p.name for p in opt.params] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for p in opt.params:
        assert torch.equal(p.state["momentum_buffer"].tensor(), ref["momentum"][p.name])
        assert torch.equal(p.weight.tensor(), ref["params"][p.name])
    assert opt.groups[0]["lr"] == 0.01 and opt.groups[0]["momentum"] == 0.9
    assert info.info["step"] == stop_at
