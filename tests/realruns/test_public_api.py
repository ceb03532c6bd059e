"""``import optimlab`` from a user's project that has its own ``core`` package, and attach to it."""
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from core import cli
from core.listen import Listener

ROOT = Path(__file__).resolve().parents[2]

USER_CORE = "WHO = 'the user'\n"
SCRIPT = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import core                      # the user's own package, found first (the script's folder)
    import optimlab                  # ours, loaded as optimlab.core
    import core as again
    assert core.WHO == again.WHO == "the user", core.__file__
    assert sys.modules["core"] is core and "optimlab.core.watch" not in sys.modules
    import torch
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    w = optimlab.watch(opt, model=model, name="userproject")
    assert type(w).__module__ == "optimlab.core.watch", type(w).__module__
    assert sys.modules["core"] is core   # watching registered no top-level core of ours
    Path("address.tmp").write_text(w.address)
    os.replace("address.tmp", "address")
    x = torch.randn(8, 3)
    while not Path("stop").exists():
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        w.report(loss=loss)
        opt.step()
    w.close()
    print("steps", w.step)
""")


def test_a_script_in_a_project_with_its_own_core_imports_optimlab_and_attaches(tmp_path, capsys):
    project = tmp_path / "project"
    (project / "core").mkdir(parents=True)
    (project / "core" / "__init__.py").write_text(USER_CORE)
    (project / "train.py").write_text(SCRIPT)
    # ROOT on PYTHONPATH stands for site-packages: after the script's own folder, as an install is
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "train.py"], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (project / "address").exists():
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the script never started watching"
            time.sleep(0.05)
        address = (project / "address").read_text()
        with Listener(address) as lst:
            frame = lst.next_frame(timeout=60)
        assert frame is not None and frame.run_id == "userproject"
        assert [t.name for t in frame.tensors] == ["weight", "bias"]
        assert cli.main(["listen", address, "--frames", "2", "--json", "--timeout", "60"]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert len(lines) == 2 and lines[0]["run"] == "userproject" and lines[0]["optimizer"] == "SGD"
        assert lines[1]["step"] >= lines[0]["step"] and isinstance(lines[1]["loss"], float)
        assert lines[0]["tensors"]["weight"]["shape"] == [2, 3]
        assert lines[0]["tensors"]["weight"]["state"] == {"momentum_buffer": [2, 3]}
    finally:
        (project / "stop").write_text("")
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert out.startswith("steps ")


def test_listen_with_no_script_running_says_so_in_one_line(capsys):
    assert cli.main(["listen"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("optimlab: No watched script is running") and err.count("\n") == 1


def test_only_local_sockets_are_offered(capsys):
    assert cli.main(["listen", "tcp://127.0.0.1:5555"]) == 2
    assert "only local Unix sockets" in capsys.readouterr().err
