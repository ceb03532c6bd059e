"""Frames cross the socket as plain data, and only the user can reach a watched script's sockets."""
import os

import msgspec
import numpy as np
import pytest

from core import channel, wire
from core.snapshot import ArrayView, GroupSnapshot, History, Snapshot, TensorSnapshot


def _frame() -> Snapshot:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    v = ArrayView((2, 3), "float32", a, True, (1, 1), 0.0, 5.0, 2.5, float(np.linalg.norm(a)))
    t = TensorSnapshot("w", 0, 0, v, v, state={"exp_avg": v, "step": 3.0, "note": "x"})
    return Snapshot(seq=1, step=7, loss=0.5, optimizer="Adam", device="cpu", defaults={"betas": (0.9, 0.99)},
                    groups=(GroupSnapshot(0, {"lr": 0.1}, (0,), ("w",)),), tensors=(t,), history=History.empty())


def test_a_frame_arrives_equal_with_tuples_arrays_and_nested_state():
    f = _frame()
    g = wire.decode(wire.encode(f))
    assert isinstance(g, Snapshot) and g.step == 7 and g.groups[0].names == ("w",)
    t = g.tensors[0]
    assert isinstance(t.state["exp_avg"], ArrayView) and t.state["step"] == 3.0
    assert np.array_equal(t.value.values, f.tensors[0].value.values) and t.value.shape == (2, 3)
    assert not t.value.values.flags.writeable


def test_frames_sharing_their_curves_arrive_with_them_and_new_curves_replace_them():
    """A running watch's frames repeat one History object (its encoding is reused): each frame
    still carries the curves whole, and a new History is encoded anew."""
    from dataclasses import replace
    from core.series import SeriesSet
    s = SeriesSet()
    s.add(1, {"loss": 2.0})
    h1 = s.view()
    f1 = replace(_frame(), history=h1)
    f2 = replace(f1, seq=2, step=8)
    a, b = wire.decode(wire.encode(f1)), wire.decode(wire.encode(f2))
    assert b.step == 8 and list(a.history.loss) == list(b.history.loss) == [2.0]
    s.add(2, {"loss": 1.0})
    c = wire.decode(wire.encode(replace(f1, seq=3, history=s.view())))
    assert list(c.history.loss) == [2.0, 1.0] and list(c.history.step) == [1.0, 2.0]


@pytest.mark.parametrize("payload, why", [
    ({"__dc__": "Popen", "args": ["sh"]}, "not a frame type"),
    ({"__nd__": ["object", [1], b"\0" * 8]}, "not a plain number type"),
    ({"__nd__": ["float32", [4], b"\0" * 8]}, "do not match its shape"),
    ({"__nd__": ["float32", [-1], b""]}, "malformed shape"),
])
def test_anything_but_our_plain_types_is_refused(payload, why):
    with pytest.raises(wire.WireError, match=why):
        wire.decode(msgspec.msgpack.encode(payload))


def test_a_pickle_is_not_a_message():
    import pickle
    with pytest.raises(wire.WireError):
        wire.decode(pickle.dumps(os.system))


def test_the_socket_folder_is_made_private_and_a_shared_one_is_refused(tmp_path, monkeypatch):
    d = tmp_path / "mine"
    monkeypatch.setenv("OPTIMLAB_RUNTIME_DIR", str(d))
    assert channel.runtime_dir() == d and (os.stat(d).st_mode & 0o777) == 0o700
    os.chmod(d, 0o755)
    with pytest.raises(channel.ChannelError, match="other users may enter it"):
        channel.runtime_dir()


def test_a_watch_address_outside_a_private_folder_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    with pytest.raises(channel.ChannelError, match="other users may enter it"):
        channel.endpoint_for("x", str(shared / "run"))
    with pytest.raises(channel.ChannelError, match="only local Unix sockets"):
        channel.endpoint_for("x", "tcp://0.0.0.0:5555")
