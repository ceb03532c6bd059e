"""Zip archives (.optimlab sessions, torch.save files) are judged by their central
directory before any member is read: bombs, oversized or encrypted members, unknown
compression, bad offsets and duplicate names are refused in one sentence naming the
file. The app's load functions open bombs in a child capped in memory, so a regression
fails the test instead of eating the machine. The CLI (which may load in a child of its
own) is checked here on the refusals that do not depend on the memory left."""
import contextlib
import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

from core import cli, edits, files, session_file
from core.session import Session
from core.spec import loads

from .forked_child import MB, in_child

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "resources" / "examples" / "seed_walkthrough.json"
CAP = 256 * MB  # the child may grow by this much; every bomb here expands to twice that
BOMB = 512 << 20


def seed() -> Session:
    spec, journal = loads(SEED.read_text())
    return Session(spec, journal)


# ----- building archives byte by byte (zipfile cannot write doctored ones) -----

def zeros_deflated(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``size`` zero bytes (a few kB per 16 MB) and its CRC-32.
    Full flushes make each 16 MB block self-contained, so one block repeats."""
    block = 16 << 20
    assert size % block == 0
    zeros = bytes(block)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size // block):
        crc = zlib.crc32(zeros, crc)
    return chunk * (size // block) + b"\x03\x00", crc  # \x03\x00: an empty final block


def stored(name: str, data: bytes) -> dict:
    return {"name": name, "method": 0, "data": data, "crc": zlib.crc32(data), "size": len(data)}


def deflated_zeros(name: str, size: int) -> dict:
    data, crc = zeros_deflated(size)
    return {"name": name, "method": 8, "data": data, "crc": crc, "size": size}


def raw_zip(entries, flags: int = 0, eocd_offset=None, header_offsets=None) -> bytes:
    """A zip of ``entries`` as given: methods, flags, sizes and offsets are not checked.
    An entry whose given header offset is that of an earlier one shares its data."""
    out, central, written = io.BytesIO(), io.BytesIO(), set()
    for k, e in enumerate(entries):
        name = e["name"].encode()
        offset = out.tell() if header_offsets is None else header_offsets[k]
        if offset not in written:
            written.add(offset)
            out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, e["method"], 0, 0x21,
                                  e["crc"], len(e["data"]), e["size"], len(name), 0) + name + e["data"])
        central.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, flags, e["method"], 0, 0x21,
                                  e["crc"], len(e["data"]), e["size"], len(name), 0, 0, 0, 0, 0o644 << 16,
                                  offset) + name)
    cd_offset = out.tell()
    out.write(central.getvalue())
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central.getvalue()),
                          cd_offset if eocd_offset is None else eocd_offset, 0))
    return out.getvalue()


@pytest.fixture(scope="module")
def parts():
    """A real session's two members, and a torch.save file's members."""
    buf = io.BytesIO(session_file.pack(seed()))
    with zipfile.ZipFile(buf) as z:
        doc, ckpt = z.read("session.json"), z.read("checkpoint.pt")
    with zipfile.ZipFile(io.BytesIO(files.to_bytes({"w": torch.zeros(1)}))) as z:
        torch_members = [(i.filename, z.read(i)) for i in z.infolist()]
    return {"doc": doc, "ckpt": ckpt, "torch": torch_members}


def torch_bomb(parts) -> bytes:
    """A torch.save file whose one storage member inflates to BOMB bytes."""
    return raw_zip([deflated_zeros(n, BOMB) if "/data/" in n else stored(n, d) for n, d in parts["torch"]])


# ----- what the app and the CLI do with a file, in a capped child -----

def open_in_app(path):
    try:
        edits.open_session(None, path)
        return "opened"
    except (files.LoadError, ValueError) as e:
        return f"{type(e).__name__}: {e}"


def load_in_app(path):
    """Load a torch file into a session as the app does; report the refusal and whether the session changed."""
    s = seed()
    before = files.to_bytes(s.optimizer.state_dict())
    try:
        edits.load_torch_file(s, path)
        return "loaded", True
    except files.LoadError as e:
        return f"LoadError: {e}", files.to_bytes(s.optimizer.state_dict()) == before and not s.blobs


def run_cli(*argv):
    return cli.main([str(a) for a in argv])


def capped(fn, *args):
    result = in_child(fn, *args, headroom=CAP)
    assert result[0] == "ok", result  # a MemoryError here means something read the bomb
    return result[1], result[2]


def assert_cli_one_line(argv, words):
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        code = run_cli(*argv)
    err = buf.getvalue()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


# ----- bombs -----

def test_session_whose_checkpoint_is_a_zip_bomb_is_refused_without_inflating_it(tmp_path, parts):
    path = tmp_path / "bomb.optimlab"
    path.write_bytes(raw_zip([stored("session.json", parts["doc"]), deflated_zeros("checkpoint.pt", BOMB)]))
    assert path.stat().st_size < 2 * MB
    msg, _ = capped(open_in_app, path)
    assert msg == ("LoadError: bomb.optimlab looks like a zip bomb: member checkpoint.pt would expand "
                   "from 522 kB to 537 MB"), msg
    assert_cli_one_line(["run", path], ["zip bomb", "bomb.optimlab"])


def test_torch_file_that_is_a_zip_bomb_is_refused_and_the_session_is_unchanged(tmp_path, parts):
    path = tmp_path / "bomb.pt"
    path.write_bytes(torch_bomb(parts))
    (msg, unchanged), _ = capped(load_in_app, path)
    assert msg.startswith(f"LoadError: {path} looks like a zip bomb: member ") and "537 MB" in msg, msg
    assert unchanged
    assert_cli_one_line(["run", "seed_walkthrough", "--load-optimizer", path], ["zip bomb"])


def test_session_with_a_bomb_inside_its_stored_checkpoint_is_refused(tmp_path, parts):
    path = tmp_path / "nested.optimlab"
    path.write_bytes(raw_zip([stored("session.json", parts["doc"]), stored("checkpoint.pt", torch_bomb(parts))]))
    msg, _ = capped(open_in_app, path)
    assert msg.startswith("LoadError: The checkpoint in nested.optimlab looks like a zip bomb"), msg
    assert_cli_one_line(["run", path], ["checkpoint in nested.optimlab", "zip bomb"])


def test_honest_session_bigger_than_the_memory_left_is_refused_before_reading(tmp_path, parts):
    path = tmp_path / "big.optimlab"
    with zipfile.ZipFile(path, "w") as z:  # stored, ratio 1: only its size is wrong for this memory
        z.writestr("session.json", parts["doc"])
        z.writestr("checkpoint.pt", bytes(300 * MB))
    msg, _ = capped(open_in_app, path)
    assert msg.startswith("LoadError: Opening big.optimlab needs 300 MB; ") and msg.endswith(" are available"), msg


def test_torch_file_bigger_than_the_memory_left_is_refused_before_loading(tmp_path):
    path = tmp_path / "big.pt"
    torch.save({"weight": torch.zeros(25_000_000)}, path)  # 100 MB; a load needs about 3 times that
    (msg, unchanged), _ = capped(load_in_app, path)
    assert msg.startswith(f"LoadError: Loading {path} needs 300 MB; ") and msg.endswith(" are available"), msg
    assert unchanged


def test_deflated_sessions_and_torch_files_still_load(tmp_path):
    s = seed()
    s.step(3)
    plain = tmp_path / "plain.optimlab"
    session_file.save_session(s, plain)
    squeezed = tmp_path / "squeezed.optimlab"
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(squeezed, "w", zipfile.ZIP_DEFLATED) as zout:
        for i in zin.infolist():
            zout.writestr(i.filename, zin.read(i), compress_type=zipfile.ZIP_DEFLATED)
    r = session_file.load_session(squeezed)
    assert r.step_count == s.step_count and torch.equal(r.params["weight"], s.params["weight"])
    pt = tmp_path / "opt.pt"
    files.save_optimizer(s, pt)
    with zipfile.ZipFile(pt) as zin:
        members = [(i.filename, zin.read(i)) for i in zin.infolist()]
    with zipfile.ZipFile(pt, "w", zipfile.ZIP_DEFLATED) as zout:
        for n, d in members:
            zout.writestr(n, d)
    assert "optimizer" in edits.load_torch_file(seed(), pt)


# ----- doctored directories -----

def _doctored(parts) -> dict:
    doc, ckpt = parts["doc"], parts["ckpt"]
    good = [stored("session.json", doc), stored("checkpoint.pt", ckpt)]
    method9 = [dict(good[0], method=9), good[1]]
    big_json = [stored("session.json", doc + b" " * (70 * MB)), good[1]]
    many = good + [stored(f"extra{k}.txt", b"x") for k in range(15)]
    return {
        "encrypted.optimlab": (raw_zip(good, flags=0x1),
                               "encrypted.optimlab is encrypted (member session.json); "
                               "optimlab reads only unencrypted files"),
        "method9.optimlab": (raw_zip(method9),
                             "method9.optimlab uses compression method 9 (Deflate64) for session.json; "
                             "optimlab reads only stored or deflated members"),
        "far.optimlab": (raw_zip(good, eocd_offset=0xFFFFFFF0),
                         "far.optimlab is damaged: its end-of-archive record points outside the file"),
        "past.optimlab": (raw_zip(good, eocd_offset=len(doc) + len(ckpt) + 200),
                          "past.optimlab is damaged: its end-of-archive record points outside the file"),
        "shifted.optimlab": (raw_zip(good, eocd_offset=1), "shifted.optimlab is damaged: "),
        "beyond.optimlab": (raw_zip(good, header_offsets=[0, 0x7FFFFFF0]),
                            "beyond.optimlab is damaged: member checkpoint.pt lies beyond the end of the file"),
        "twice.optimlab": (raw_zip([stored("session.json", b'{"format": "x"}')] + good),
                           "twice.optimlab holds two members named session.json: it is damaged or was doctored"),
        "many.optimlab": (raw_zip(many), "many.optimlab lists 17 members; at most 16 are allowed"),
        "overlap.optimlab": (raw_zip([good[1], dict(good[1], name="session.json"), dict(good[1], name="x")],
                                     header_offsets=[0, 0, 0]),
                             "overlap.optimlab is damaged or a zip bomb: its members overlap"),
        "bigjson.optimlab": (raw_zip(big_json),
                             "bigjson.optimlab has a session.json of 70 MB; at most 64 MB are allowed"),
    }


def test_doctored_sessions_are_refused_in_one_sentence_naming_the_file(tmp_path, parts, capsys):
    for name, (data, expected) in _doctored(parts).items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(files.LoadError) as e:
            edits.open_session(None, path)
        msg = str(e.value)
        assert msg.startswith(expected) and "\n" not in msg, (name, msg)
        assert_cli_one_line(["run", path], [name])
        with pytest.raises(files.LoadError) as e:  # how a session travels to the runner process
            session_file.unpack(data, name)
        assert str(e.value).startswith(expected), (name, str(e.value))


def test_doctored_torch_files_are_refused_and_change_nothing(tmp_path, parts):
    members = parts["torch"]
    cases = {
        "enc.pt": (raw_zip([stored(n, d) for n, d in members], flags=0x1), "is encrypted"),
        "m9.pt": (raw_zip([dict(stored(n, d), method=9) for n, d in members]), "compression method 9"),
        "dup.pt": (raw_zip([stored(n, d) for n, d in members + members[:1]]), "holds two members named"),
        "far.pt": (raw_zip([stored(n, d) for n, d in members], eocd_offset=0xFFFFFFF0), "points outside the file"),
    }
    for name, (data, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        msg, unchanged = load_in_app(path)
        assert msg.startswith(f"LoadError: {path}") and words in msg and "\n" not in msg, msg
        assert unchanged
        assert_cli_one_line(["run", "seed_walkthrough", "--load-optimizer", path], [words])


def test_json_session_is_read_only_as_far_as_memory_and_a_cap_allow(tmp_path, parts, monkeypatch):
    big = tmp_path / "big.json"
    doc = json.loads(parts["doc"])
    doc["description"] = " " * (100 * MB)
    big.write_text(json.dumps(doc))  # 100 MB of JSON: 400 MB to parse, more than the child may take
    msg, _ = capped(open_in_app, big)
    assert msg.startswith("LoadError: Opening big.json needs 400 MB; ") and msg.endswith(" are available"), msg
    monkeypatch.setattr(session_file, "MAX_JSON_SESSION_BYTES", 50 * MB)
    with pytest.raises(files.LoadError) as e:
        edits.open_session(None, big)
    assert str(e.value) == "big.json is over 50 MB, the most a .json session may be"
