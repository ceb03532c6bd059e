"""A malicious pickle is never executed, wherever it hides, in whatever pickle protocol or
torch.save format, through every load path of the app and the CLI: it is refused in one
sentence, the marker file its payload would write never appears, and the session is as it was."""
import builtins
import collections
import io
import os
import pickle
import subprocess
import zipfile

import pytest
import torch

from core import edits, files, session_file

from .state_helpers import assert_unchanged, cli, frozen, one_sentence, session, spec_file, state_of

PROTOCOLS = range(6)


class Call:
    """Unpickling this calls ``fn(*args)``: what every malicious pickle does."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class Attr(Call):
    """Unpickles to ``getattr(obj, name)``, callable so it can be the function of a Call."""

    def __init__(self, obj, name):
        super().__init__(getattr, obj, name)

    def __call__(self, *args):  # pickle only checks that a reduce function is callable
        raise AssertionError("never called while pickling")


def payloads(marker) -> dict:
    m = str(marker)
    return {
        "os.system": Call(os.system, f"touch {m}"),
        "subprocess": Call(subprocess.call, ["touch", m]),
        "exec": Call(builtins.exec, f"open({m!r}, 'w').close()"),
        "eval": Call(builtins.eval, f"open({m!r}, 'w').close()"),
        "__import__": Call(Attr(Call(builtins.__import__, "os"), "system"), f"touch {m}"),
        "writes_file": Call(builtins.open, m, "w"),
    }


KINDS = list(payloads("x"))


class FakeTensor:
    """Pickles as torch's tensor rebuild with ``storage`` as its storage (allowed function,
    malicious argument)."""

    def __init__(self, storage):
        self.storage = storage

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (self.storage, 0, (2,), (1,), False, collections.OrderedDict())


class StorageId:
    """Stands for a storage; the pickler below gives it a malicious persistent id."""


class PidPickler(pickle.Pickler):
    def __init__(self, f, protocol, payload):
        super().__init__(f, protocol=protocol)
        self.payload = payload

    def persistent_id(self, obj):
        return ("storage", self.payload, "0", "cpu", 2) if isinstance(obj, StorageId) else None


# ----- writing the hostile files -----

def torch_file(obj, path, protocol: int, fmt: str) -> None:
    """``obj`` in torch.save's zip or legacy format, or as a bare pickle."""
    if fmt == "raw":
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=protocol)
    else:
        torch.save(obj, path, pickle_protocol=protocol, _use_new_zipfile_serialization=fmt == "zip")


def zip_with_data_pkl(data: bytes) -> bytes:
    """A torch.save zip whose data.pkl is ``data`` (the other records are real)."""
    buf = io.BytesIO()
    torch.save({"x": torch.zeros(2)}, buf)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z, zipfile.ZipFile(out, "w") as w:
        for info in z.infolist():
            w.writestr(info.filename, data if info.filename.endswith("data.pkl") else z.read(info))
    return out.getvalue()


def hidden(place: str, payload, protocol: int, fmt: str, path) -> None:
    """A real-looking state_dict, parameters or checkpoint with ``payload`` at ``place``."""
    sd = state_of("Adam")
    params = {"a": torch.zeros(2), "b": torch.zeros(3, 2)}
    if place == "state":
        sd["state"][0]["exp_avg"] = payload
    elif place == "param_groups":
        sd["param_groups"][0]["lr"] = payload
    elif place == "storage":
        sd["state"][0]["exp_avg"] = FakeTensor(payload)
    elif place == "checkpoint":
        sd["state"][1]["exp_avg_sq"] = payload
        sd = {"model_state_dict": params, "optimizer_state_dict": sd, "epoch": 3}
    elif place == "params":
        sd = {**params, "b": payload}
    if place != "storage_id":
        torch_file(sd, path, protocol, fmt)
        return
    buf = io.BytesIO()  # a persistent id (torch's way to name a storage) carrying the payload
    sd["state"][0]["exp_avg"] = FakeTensor(StorageId())
    PidPickler(buf, protocol, payload).dump(sd)
    if fmt == "zip":
        path.write_bytes(zip_with_data_pkl(buf.getvalue()))
    else:  # legacy: torch's header pickles, then the object
        head = io.BytesIO()
        for part in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(part, head, protocol=2)
        path.write_bytes(head.getvalue() + buf.getvalue())


def optimlab_with(checkpoint: bytes, tmp_path):
    """A real .optimlab session whose checkpoint.pt is replaced by ``checkpoint``."""
    real = tmp_path / "real.optimlab"
    session_file.save_session(session("Adam", 2), real)
    evil = tmp_path / "evil.optimlab"
    with zipfile.ZipFile(real) as z, zipfile.ZipFile(evil, "w") as w:
        w.writestr("session.json", z.read("session.json"))
        w.writestr("checkpoint.pt", checkpoint)
    return evil


# ----- loading them every way the app and the CLI do -----

def assert_refused_everywhere(path, marker, tmp_path, capsys) -> list[str]:
    """Every load path refuses ``path`` in one sentence and runs nothing; returns the messages."""
    s = session("Adam", 1)
    before = frozen(s)
    messages = []
    for load in (lambda: files.read_optimizer_state(path), lambda: files.read_params(path),
                 lambda: edits.load_torch_file(s, path)):
        with pytest.raises(files.LoadError) as e:
            load()
        messages.append(str(e.value))
        assert not marker.exists()
    assert_unchanged(s, before)
    spec = spec_file(tmp_path)
    for flag in ("--load-optimizer", "--load-params"):
        code, out, err = cli(capsys, "run", spec, flag, path, "--steps", "1")
        assert code == 2 and out == "" and err.count("\n") == 1, err
        messages.append(err)
        assert not marker.exists()
    for msg in messages:
        assert one_sentence(msg), msg
    return messages


def test_every_payload_really_runs_when_unpickled_unsafely(tmp_path):
    """The matrix means something: each payload does write its marker under plain pickle."""
    for kind, payload in payloads(tmp_path / "ran").items():
        pickle.loads(pickle.dumps(payload))
        assert (tmp_path / "ran").exists(), kind
        (tmp_path / "ran").unlink()


@pytest.mark.parametrize("fmt", ["zip", "legacy", "raw"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("kind", KINDS)
def test_payload_at_top_level_is_refused_and_never_run(tmp_path, capsys, kind, protocol, fmt):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch_file(payloads(marker)[kind], path, protocol, fmt)
    messages = assert_refused_everywhere(path, marker, tmp_path, capsys)
    if protocol >= 2:  # the reader meets the global itself and says so
        assert all("not executed" in m for m in messages), messages


PLACES = ["state", "param_groups", "storage", "storage_id", "checkpoint", "params"]


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("place, protocol", [(pl, pr) for pl in PLACES for pr in PROTOCOLS
                                             if not (pl == "storage_id" and pr == 0)])  # protocol 0: text ids only
def test_payload_hidden_inside_a_state_dict_is_refused_and_never_run(tmp_path, capsys, place, protocol, fmt):
    marker = tmp_path / "PWNED"
    kind = KINDS[(protocol + len(place)) % len(KINDS)]  # every payload turns up in several places
    path = tmp_path / "evil.pth"
    hidden(place, payloads(marker)[kind], protocol, fmt, path)
    messages = assert_refused_everywhere(path, marker, tmp_path, capsys)
    if protocol >= 2:
        assert all("not executed" in m for m in messages), messages


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_payload_inside_an_optimlab_sessions_checkpoint_is_refused_and_never_run(tmp_path, capsys, protocol, fmt):
    marker = tmp_path / "PWNED"
    kind = KINDS[protocol % len(KINDS)]
    buf = tmp_path / "ckpt.pt"
    torch_file({"params": {"a": torch.zeros(2), "b": torch.zeros(3, 2)}, "optimizer": state_of("Adam"),
                "grad_rng": payloads(marker)[kind]}, buf, protocol, fmt)
    evil = optimlab_with(buf.read_bytes(), tmp_path)
    for load in (lambda: session_file.load_session(evil), lambda: edits.open_session(None, evil)):
        with pytest.raises(files.LoadError) as e:
            load()
        assert one_sentence(str(e.value)) and not marker.exists()
        if protocol >= 2:
            assert "not executed" in str(e.value)
    code, out, err = cli(capsys, "run", evil, "--steps", "1")
    assert code == 2 and out == "" and err.count("\n") == 1 and not marker.exists()
