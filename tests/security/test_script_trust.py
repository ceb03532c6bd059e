"""Opening a session never runs code the user has not agreed to (issue 8, item 1).

A task script runs only once the user trusted that file (real path + SHA-256); it is
only ever a plain .py text file, never a zip or anything inside a session file; a
relative script path is relative to the session file's folder.
"""
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from core import session_file, trust
from core.cli import main
from core.spec import SpecError
from core.trust import UntrustedScript

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "resources" / "examples"

SCRIPT = '''
import pathlib, torch
pathlib.Path({marker!r}).write_text("ran")
def make_model():
    return torch.nn.Linear(1, 1)
def make_data():
    x = torch.linspace(-1, 1, 40).unsqueeze(1)
    return x[:32], 2 * x[:32], x[32:], 2 * x[32:]
def loss_fn(out, y):
    return torch.nn.functional.mse_loss(out, y)
'''


@pytest.fixture(autouse=True)
def no_agreements():
    trust.forget()
    yield
    trust.forget()


def spec_doc(script: str) -> dict:
    return {"format": "optimlab-spec", "version": 1,
            "spec": {"optimizer": "SGD", "hparams": {"lr": 0.1}, "zero_grad_each_step": True,
                     "gradient": {"kind": "task", "task": {"kind": "script", "script": script}}},
            "journal": [{"op": "step", "n": 2}]}


def write_script(folder: Path, marker: Path, name="task.py") -> Path:
    p = folder / name
    p.write_text(SCRIPT.format(marker=str(marker)))
    return p


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_session_naming_a_script_runs_nothing_until_trusted(tmp_path):
    marker = tmp_path / "RAN"
    script = write_script(tmp_path, marker)
    sess = tmp_path / "s.json"
    sess.write_text(json.dumps(spec_doc("task.py")))
    with pytest.raises(UntrustedScript) as e:
        session_file.load_session(sess)
    assert not marker.exists()
    assert str(script) in str(e.value) and e.value.digest[:12] in str(e.value)
    trust.trust(str(script), e.value.digest)
    s = session_file.load_session(sess)
    assert marker.exists() and s.step_count == 2


def test_changed_script_asks_again(tmp_path):
    marker = tmp_path / "RAN"
    script = write_script(tmp_path, marker)
    trust.trust_file(str(script))
    script.write_text(script.read_text() + "\n# changed\n")
    sess = tmp_path / "s.json"
    sess.write_text(json.dumps(spec_doc(str(script))))
    with pytest.raises(UntrustedScript):
        session_file.load_session(sess)
    assert not marker.exists()


def test_relative_script_path_is_relative_to_the_session_file_not_the_cwd(tmp_path, monkeypatch):
    real, decoy = tmp_path / "proj", tmp_path / "cwd"
    real.mkdir()
    decoy.mkdir()
    write_script(real, real / "RAN")
    write_script(decoy, decoy / "RAN")  # same name in the working folder: must not be the one run
    sess = real / "s.json"
    sess.write_text(json.dumps(spec_doc("task.py")))
    monkeypatch.chdir(decoy)
    trust.trust_all()
    session_file.load_session(sess)
    assert (real / "RAN").exists() and not (decoy / "RAN").exists()


def test_saved_session_keeps_a_relative_script_path_and_reopens_elsewhere(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    write_script(proj, tmp_path / "RAN")
    (proj / "s.json").write_text(json.dumps(spec_doc("task.py")))
    trust.trust_all()
    s = session_file.load_session(proj / "s.json")
    session_file.save_session(s, proj / "again.optimlab")
    with zipfile.ZipFile(proj / "again.optimlab") as z:
        doc = json.loads(z.read("session.json"))
    assert doc["spec"]["gradient"]["task"]["script"] == "task.py"
    moved = tmp_path / "moved"
    proj.rename(moved)
    assert session_file.load_session(moved / "again.optimlab").step_count == 2


def stealth_session(path: Path, marker: Path) -> None:
    """A .optimlab whose task script is the session file itself: runpy would run its __main__.py."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("__main__.py", f"open({str(marker)!r}, 'w').write('pwned')\n")
        z.writestr("session.json", json.dumps(dict(spec_doc(str(path)), format="optimlab-session")))
        ckpt = io.BytesIO()
        torch.save({"params": {}, "optimizer": {}}, ckpt)  # readable: the refusal must come from the script
        z.writestr("checkpoint.pt", ckpt.getvalue())
    path.write_bytes(buf.getvalue())


def test_a_zip_is_never_run_as_a_script_even_when_trusted(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    for name in ("stealth.optimlab", "stealth.py"):  # a zip named .py is refused too
        sess = tmp_path / name
        stealth_session(sess, marker)
        code, out, err = cli(capsys, "run", sess, "--steps", 5, "--trust-script")
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert not marker.exists()
    with pytest.raises(SpecError, match="not Python source text|not a .py file"):
        trust.trust_all()
        trust.checked_source(str(tmp_path / "stealth.py"))
    assert not marker.exists()


def test_cli_refuses_an_untrusted_script_in_one_line_and_runs_it_with_trust_script(tmp_path, capsys):
    marker = tmp_path / "RAN"
    write_script(tmp_path, marker)
    sess = tmp_path / "s.json"
    sess.write_text(json.dumps(spec_doc("task.py")))
    code, out, err = cli(capsys, "run", sess, "--steps", 1)
    assert code == 2 and len(err.splitlines()) == 1
    assert "--trust-script" in err and "sha256" in err and not marker.exists()
    code, out, err = cli(capsys, "run", sess, "--steps", 1, "--trust-script")
    assert code == 0 and "step 3" in out and marker.exists()


def test_shipped_example_scripts_need_no_agreement(tmp_path, capsys):
    sess = tmp_path / "s.json"
    sess.write_text(json.dumps(spec_doc(str(EXAMPLES / "script_sine_regression.py"))))
    code, out, err = cli(capsys, "run", sess, "--steps", 1)
    assert code == 0, err


def test_screenshot_mode_refuses_an_untrusted_session_without_running_it(tmp_path):
    marker = tmp_path / "RAN"
    write_script(tmp_path, marker)
    sess = tmp_path / "s.json"
    sess.write_text(json.dumps(spec_doc("task.py")))
    r = subprocess.run([sys.executable, "-m", "app", str(sess), "--screenshot", str(tmp_path / "x.png")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert r.returncode == 2 and "not run" in r.stderr
    assert not marker.exists() and not (tmp_path / "x.png").exists()
