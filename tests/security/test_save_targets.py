"""Saving writes a regular file or a new name, and nothing else: special files, folders,
empty and slash-ended names are refused in one sentence; a symlink is written through;
modes are kept; a killed save leaves the old file, and its temp is cleaned up later."""
import errno
import os
import re
import signal
import socket
import stat
import time
from pathlib import Path

import pytest
import torch

from core import cli, files, session_file
from core.session import Session
from core.spec import loads

from .forked_child import in_child

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "resources" / "examples" / "seed_walkthrough.json"
SAVES = {
    "optimizer": files.save_optimizer, "params": files.save_params,
    "checkpoint": files.save_checkpoint, "session": session_file.save_session,
}


def seed(steps: int = 0) -> Session:
    spec, journal = loads(SEED.read_text())
    s = Session(spec, journal)
    if steps:
        s.step(steps)
    return s


def cli_run(capsys, *args):
    code = cli.main(["run", "seed_walkthrough", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def assert_cli_refuses(capsys, option, path, words):
    code, _, err = cli_run(capsys, option, path)
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err


def leftovers(folder: Path, keep) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name not in set(keep))


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


# ----- what may be a target -----

def _device(tmp_path):
    """A character device to save to. Root gets a private copy of /dev/null's node, so a
    regression replaces that copy, never the machine's /dev/null; others cannot replace
    /dev/null at all (no write permission on /dev), so they use it."""
    if os.geteuid() != 0:
        return "/dev/null"
    node = tmp_path / "null.pt"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("root without CAP_MKNOD: no device node to save to that a regression could not harm")
    return node


def _special_targets(tmp_path):
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock.pt"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    folder = tmp_path / "folder.pt"
    folder.mkdir()
    return sock, [(_device(tmp_path), "a character device"), (fifo, "a named pipe (FIFO)"),
                  (sock_path, "a socket"), (folder, "a folder")]


def test_save_refuses_devices_fifos_sockets_and_folders_in_one_sentence(tmp_path, capsys):
    s = seed()
    sock, targets = _special_targets(tmp_path)
    try:
        for target, kind in targets:
            before = os.stat(target)
            for what, save in SAVES.items():
                with pytest.raises(files.SaveError) as e:
                    save(s, target)
                assert str(e.value) == f"Cannot save to {target}: it is {kind}, not a regular file", what
            assert_cli_refuses(capsys, "--save-optimizer", target, ["not a regular file", kind])
            assert_cli_refuses(capsys, "--save-session", target, ["not a regular file"])
            after = os.stat(target)
            assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode)  # still what it was
            assert after.st_ino == before.st_ino
    finally:
        sock.close()
    assert leftovers(tmp_path, {"null.pt", "fifo.pt", "sock.pt", "folder.pt"}) == []
    assert os.listdir(tmp_path / "folder.pt") == []


def test_save_refuses_empty_and_slash_ended_names_and_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = seed()
    for save in SAVES.values():
        with pytest.raises(files.SaveError, match="^Cannot save: no file name was given$"):
            save(s, "")
        with pytest.raises(files.SaveError) as e:
            save(s, "dir/")
        assert str(e.value) == "Cannot save to dir/: a name ending in a slash is a folder, not a file"
    for option in ("--save-optimizer", "--save-params", "--save-checkpoint", "--save-session"):
        assert_cli_refuses(capsys, option, "", [f"{option} needs a file name"])
        assert_cli_refuses(capsys, option, "dir/", ["ending in a slash"])
    assert os.listdir(tmp_path) == []


def test_save_refuses_a_symlink_loop_and_a_missing_folder(tmp_path, capsys):
    s = seed()
    (tmp_path / "a.pt").symlink_to(tmp_path / "b.pt")
    (tmp_path / "b.pt").symlink_to(tmp_path / "a.pt")
    with pytest.raises(files.SaveError, match="it is a symlink loop$"):
        files.save_optimizer(s, tmp_path / "a.pt")
    missing = tmp_path / "no" / "such" / "o.pt"
    with pytest.raises(files.SaveError) as e:
        session_file.save_session(s, missing)
    assert str(e.value) == f"Cannot save to {missing}: the folder {missing.parent} does not exist"
    assert_cli_refuses(capsys, "--save-params", missing, ["does not exist"])
    assert_cli_refuses(capsys, "--save-params", tmp_path / "a.pt", ["symlink loop"])
    assert (tmp_path / "a.pt").is_symlink() and (tmp_path / "b.pt").is_symlink()


def _save_into_read_only_places(folder: Path, ro_file: Path):
    """In a child: as root, drop the capability that lets root ignore permission bits."""
    if os.geteuid() == 0:
        _drop_dac_override()
    out = []
    for target in (folder / "new.pt", ro_file):
        try:
            files.save_optimizer(seed(), target)
            out.append("saved")
        except files.SaveError as e:
            out.append(str(e))
    return out


def _drop_dac_override() -> None:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        data[0].effective &= ~(1 << cap)
        data[0].permitted &= ~(1 << cap)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def test_save_into_a_read_only_folder_or_over_a_read_only_file_is_one_sentence(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    ro_file = tmp_path / "kept.pt"
    ro_file.write_bytes(b"keep me")
    ro_file.chmod(0o444)
    folder.chmod(0o555)
    try:
        result = in_child(_save_into_read_only_places, folder, ro_file)
    finally:
        folder.chmod(0o755)
    assert result[0] == "ok", result
    assert result[1] == [f"Cannot save to {folder / 'new.pt'}: the folder {folder} is read-only",
                         f"Cannot save to {ro_file}: the file is read-only"]
    assert os.listdir(folder) == []
    assert ro_file.read_bytes() == b"keep me"


# ----- symlinks, hard links, modes -----

def test_save_through_a_symlink_keeps_the_link_and_updates_its_target(tmp_path):
    s = seed(steps=3)
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real = real_dir / "opt.pt"
    real.write_bytes(b"old")
    link = tmp_path / "link.pt"
    link.symlink_to(os.path.relpath(real, tmp_path))
    files.save_optimizer(s, link)
    assert link.is_symlink() and os.readlink(link) == os.path.relpath(real, tmp_path)
    state = torch.load(real, weights_only=True)
    assert torch.equal(state["state"][0]["momentum_buffer"], s.optimizer.state_dict()["state"][0]["momentum_buffer"])
    assert leftovers(tmp_path, {"link.pt", "real"}) == [] and leftovers(real_dir, {"opt.pt"}) == []
    dangling = tmp_path / "dangling.optimlab"
    dangling.symlink_to(real_dir / "created.optimlab")  # a link to a new name: the save creates it
    session_file.save_session(s, dangling)
    assert dangling.is_symlink() and (real_dir / "created.optimlab").is_file()
    assert session_file.load_session(dangling).step_count == s.step_count


def test_save_over_a_hard_link_replaces_this_name_and_leaves_the_other_intact(tmp_path):
    """The documented choice: the save stays atomic, so it makes a new file; other names
    of the old file keep the old contents, whole (a hard-link backup stays a backup)."""
    s = seed()
    main = tmp_path / "opt.pt"
    files.save_optimizer(s, main)
    old = main.read_bytes()
    other = tmp_path / "backup.pt"
    os.link(main, other)
    s.step(5)
    files.save_optimizer(s, main)
    assert other.read_bytes() == old
    assert main.read_bytes() != old
    assert os.stat(main).st_nlink == 1 and os.stat(other).st_nlink == 1
    loaded = torch.load(main, weights_only=True)
    assert torch.equal(loaded["state"][0]["momentum_buffer"], s.optimizer.state_dict()["state"][0]["momentum_buffer"])


def test_overwriting_keeps_the_files_mode_and_a_new_file_follows_the_umask(tmp_path, umask_022):
    s = seed()
    for what, save in SAVES.items():
        fresh = tmp_path / f"fresh-{what}"
        save(s, fresh)
        assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o644, what
        for mode in (0o640, 0o600, 0o664):
            fresh.chmod(mode)
            save(s, fresh)
            assert stat.S_IMODE(os.stat(fresh).st_mode) == mode, (what, oct(mode))
    os.umask(0o077)
    private = tmp_path / "private.pt"
    files.save_params(s, private)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600


def test_save_syncs_the_folder_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino, stat.S_ISDIR(os.fstat(fd).st_mode)))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("replace", Path(b).name))
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    files.save_optimizer(seed(), tmp_path / "opt.pt")
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "replace", "fsync"]  # the file's data, the rename, the folder
    assert events[0][2] is False
    assert events[2][1:] == (os.stat(tmp_path).st_ino, True)


# ----- killed saves and their temp files -----

def _save_and_hang(target: Path, ready_w: int, data: bytes):
    """In a child: start a save, write half the file, say so, then wait to be killed."""
    def writer(f):
        f.write(data[: len(data) // 2])
        f.flush()
        os.write(ready_w, b"ready")
        while True:
            signal.pause()

    files.atomic_write(target, writer)


def test_a_save_killed_midway_leaves_the_old_file_and_the_next_save_removes_its_temp(tmp_path):
    s = seed()
    target = tmp_path / "opt.pt"
    files.save_optimizer(s, target)
    old = target.read_bytes()
    s.step(4)
    new = files.to_bytes(s.optimizer.state_dict())
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            _save_and_hang(target, w, new)
        finally:
            os._exit(1)
    os.close(w)
    try:
        assert os.read(r, 5) == b"ready"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
    assert target.read_bytes() == old  # the kill -9 came mid-write: the old file is whole
    temps = leftovers(tmp_path, {"opt.pt"})
    assert len(temps) == 1 and re.fullmatch(rf"\.opt\.pt\.{pid}\.[0-9a-f]{{8}}\.tmp", temps[0]), temps
    assert os.path.getsize(tmp_path / temps[0]) == len(new) // 2
    files.save_optimizer(s, target)  # its writer is dead: the temp goes
    assert leftovers(tmp_path, {"opt.pt"}) == []
    assert target.read_bytes() == new


def test_stale_temps_go_and_live_or_foreign_ones_stay(tmp_path):
    folder = tmp_path
    hour_ago = time.time() - 3600
    names = {
        "old_mkstemp": ".run.optimlab.k3j_x9a2.tmp",  # an earlier version's temp, an hour old
        "fresh_mkstemp": ".run.optimlab.abcdefgh.tmp",  # could still be written: kept
        "live_writer": f".run.optimlab.{os.getppid()}.0123abcd.tmp",  # a running process's: kept
        "other_name": ".run.optimlab.bak.999999.0123abcd.tmp",  # run.optimlab.bak's: not ours to judge
        "not_a_temp": ".run.optimlab.notes.txt",
    }
    for key, name in names.items():
        (folder / name).write_bytes(b"x" * 10)
    os.utime(folder / names["old_mkstemp"], (hour_ago, hour_ago))
    os.utime(folder / names["other_name"], (time.time(), time.time()))
    dead = _dead_pid()
    (folder / f".run.optimlab.{dead}.89abcdef.tmp").write_bytes(b"y")
    old_live = folder / f".run.optimlab.{os.getppid()}.fedcba98.tmp"
    old_live.write_bytes(b"z")
    os.utime(old_live, (hour_ago, hour_ago))  # alive but untouched for an hour: a killed save's too
    session_file.save_session(seed(), folder / "run.optimlab")
    assert leftovers(folder, {"run.optimlab"}) == sorted(
        [names["fresh_mkstemp"], names["live_writer"], names["other_name"], names["not_a_temp"]])


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    try:
        os.kill(pid, 0)
    except OSError as e:
        assert e.errno == errno.ESRCH
    return pid
