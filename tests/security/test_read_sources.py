"""A load reads only regular files: a folder, FIFO, device, socket or symlink loop given
as a file is refused in one sentence naming the path and what it is, the same in the app's
load functions and the CLI. The app's loads run in a child with a deadline: a regression
that opens a FIFO or reads a device blocks there, and fails, instead of hanging the suite;
the CLI refuses these paths before it loads anything."""
import contextlib
import io
import os
import socket
import stat
from pathlib import Path

import pytest

from core import cli, edits
from core.session import Session
from core.spec import loads

from .forked_child import MB, in_child

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "resources" / "examples" / "seed_walkthrough.json"


def seed() -> Session:
    spec, journal = loads(SEED.read_text())
    return Session(spec, journal)


def _zero_device(tmp_path):
    """A character device that reads zeros for ever: root's own node, /dev/zero for others."""
    if os.geteuid() != 0:
        return Path("/dev/zero")
    node = tmp_path / "zero.pt"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 5))
    except PermissionError:
        return Path("/dev/zero")
    return node


@pytest.fixture
def sources(tmp_path):
    folder = tmp_path / "folder.optimlab"
    folder.mkdir()
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock.pt"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    (tmp_path / "loop_a.pt").symlink_to(tmp_path / "loop_b.pt")
    (tmp_path / "loop_b.pt").symlink_to(tmp_path / "loop_a.pt")
    yield {
        folder: "it is a folder, not a regular file",
        fifo: "it is a named pipe (FIFO), not a regular file",
        _zero_device(tmp_path): "it is a character device, not a regular file",
        sock_path: "it is a socket, not a regular file",
        tmp_path / "loop_a.pt": "it is a symlink loop",
    }
    sock.close()


@pytest.fixture(scope="module")
def session():
    """Built before any fork: a child then starts from a warm torch (a refusal changes nothing)."""
    return seed()


def app_loads(path, session):
    """What the app's two load functions say about ``path``."""
    out = {}
    for what, call in (("load_torch_file", lambda: edits.load_torch_file(session, path)),
                       ("open_session", lambda: edits.open_session(None, path))):
        try:
            call()
            out[what] = "loaded"
        except ValueError as e:
            out[what] = str(e)
    return out


def cli_loads(path):
    """What the CLI says about ``path`` as the session and as each --load-* option."""
    out = {}
    for argv in (["run", path], ["run", "seed_walkthrough", "--load-optimizer", path],
                 ["run", "seed_walkthrough", "--load-params", path]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main([str(a) for a in argv])
        out[argv[-2]] = (code, err.getvalue())
    return out


def test_folders_fifos_devices_sockets_and_loops_are_refused_by_every_reader(sources, session):
    for path, why in sources.items():
        result = in_child(app_loads, path, session, headroom=512 * MB, timeout=30)
        assert result[0] == "ok", result
        expected = f"Cannot open {path}: {why}"
        assert result[1] == {"load_torch_file": expected, "open_session": expected}, result[1]
        said = cli_loads(path)
        for option in ("run", "--load-optimizer", "--load-params"):
            code, err = said[option]
            assert (code, err) == (2, f"optimlab: {expected}\n"), (option, err)


def test_missing_and_empty_names_are_one_sentence(tmp_path, session):
    missing = tmp_path / "nowhere.optimlab"
    said = app_loads(missing, session)
    assert said["open_session"] == said["load_torch_file"] == f"No such file: {missing}"
    assert cli_loads(missing)["run"] == (2, f"optimlab: No such file: {missing}\n")
    with pytest.raises(ValueError, match="^No file name was given$"):
        edits.open_session(None, "")
    for option in ("--load-optimizer", "--load-params"):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main(["run", "seed_walkthrough", option, ""])
        assert (code, err.getvalue()) == (2, f"optimlab: {option} needs a file name; an empty one was given\n")
