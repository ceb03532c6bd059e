"""`optimlab inspect` on checkpoints written by plain torch.save and torch.distributed.checkpoint:
names, shapes and values equal what was saved; classes it would need are refused entry by entry."""
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from core import cli, files
from core.checkpoints import open_checkpoint
from core.paths import LoadError


def _trained(model, opt, steps=3):
    x = torch.randn(8, model[0].in_features, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


def _by_name(model, opt) -> dict:
    names = {p: n for n, p in model.named_parameters()}
    return {names[p]: st for p, st in opt.state.items()}


def _gan():
    torch.manual_seed(0)
    gen = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    disc = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 1))
    og, od = torch.optim.Adam(gen.parameters(), lr=1e-3), torch.optim.SGD(disc.parameters(), lr=0.1, momentum=0.9)
    _trained(gen, og)
    _trained(disc, od)
    return gen, disc, og, od


def test_a_nest_of_two_models_and_two_optimizers_is_named_by_matching_shapes(tmp_path):
    gen, disc, og, od = _gan()
    path = tmp_path / "gan.pt"
    torch.save({"models": {"generator": gen.state_dict(), "discriminator": disc.state_dict()},
                "optimizers": [og.state_dict(), od.state_dict()], "epoch": 4}, path)
    info = open_checkpoint(path)
    assert info.format == "torch.save" and info.info["epoch"] == 4
    a, b = info.optimizers
    assert (a.where, a.kind, b.where, b.kind) == ("optimizers[0]", "Adam/AdamW", "optimizers[1]", "SGD")
    assert [p.name for p in a.params] == [n for n, _ in gen.named_parameters()]
    assert [p.name for p in b.params] == [n for n, _ in disc.named_parameters()]  # BatchNorm's buffers skipped
    for o, model, opt in ((a, gen, og), (b, disc, od)):
        want = _by_name(model, opt)
        for p in o.params:
            assert set(p.state) == set(want[p.name])
            for k, v in want[p.name].items():
                assert torch.equal(p.state[k].tensor(), v), (p.name, k)
            assert torch.equal(p.weight.tensor(), model.state_dict()[p.name])


def test_param_names_in_the_groups_win(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))  # equal shapes: order alone is unsafe
    opt = torch.optim.AdamW(list(model.named_parameters())[::-1], lr=0.01)
    _trained(model, opt)
    torch.save({"optimizer_state_dict": opt.state_dict()}, tmp_path / "o.pt")
    (o,) = open_checkpoint(tmp_path / "o.pt").optimizers
    assert o.names_from == "the optimizer's param_names"
    want = _by_name(model, opt)
    assert [p.name for p in o.params] == ["1.bias", "1.weight", "0.bias", "0.weight"]
    for p in o.params:
        assert torch.equal(p.state["exp_avg"].tensor(), want[p.name]["exp_avg"])


class Hyper:  # a user's class, as trainers pickle into checkpoints
    def __init__(self, width):
        self.width = width


class Trap:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_entries_that_need_classes_are_refused_one_by_one_and_nothing_runs(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    _trained(model, opt)
    marker = tmp_path / "executed"
    path = tmp_path / "custom.pt"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "hparams": Hyper(3),
                "callbacks": [Trap(marker)]}, path)
    info = open_checkpoint(path)
    assert not marker.exists()
    refused = {w: str(n) for w, n in info.not_loaded}
    # Trap pickles as getattr(Path, "touch")(Path(marker)): the first refused global names it
    assert refused == {"hparams": f"not loaded: needs class {__name__}.Hyper",
                       "callbacks[0]": "not loaded: needs class builtins.getattr"}
    (o,) = info.optimizers
    assert [p.name for p in o.params] == ["0.weight", "0.bias"]
    assert torch.equal(o.params[0].state["momentum_buffer"].tensor(), opt.state[model[0].weight]["momentum_buffer"])
    # the app's own loaders keep refusing the whole file
    with pytest.raises(LoadError, match="Refused"):
        files.torch_read(path)
    assert not marker.exists()


def test_a_file_in_pickle_protocol_4_opens(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    opt = torch.optim.Adam(model.parameters())
    _trained(model, opt)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "p4.pt", pickle_protocol=4)
    (o,) = open_checkpoint(tmp_path / "p4.pt").optimizers
    assert [p.name for p in o.params] == ["0.weight", "0.bias"]
    assert torch.equal(o.params[1].state["exp_avg_sq"].tensor(), opt.state[model[0].bias]["exp_avg_sq"])


def _dcp_save(tmp_path):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    _trained(model, opt)
    msd, osd = get_state_dict(model, opt)
    with pytest.warns(UserWarning):  # "assuming the intent is to save in a single process"
        dcp.save({"model": msd, "optim": osd, "step": 3}, checkpoint_id=str(tmp_path / "dcp"))
    return model, opt


def test_a_distributed_checkpoint_opens_by_parameter_name_with_its_values(tmp_path):
    model, opt = _dcp_save(tmp_path)
    info = open_checkpoint(tmp_path / "dcp")
    assert info.format == "torch.distributed.checkpoint" and info.info["step"] == 3
    (o,) = info.optimizers
    assert o.names_from == "the checkpoint's state keys" and o.groups[0]["lr"] == 0.02
    want = _by_name(model, opt)
    assert [p.name for p in o.params] == list(want)
    for p in o.params:
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(p.state[k].tensor(), want[p.name][k])
        assert torch.equal(p.weight.tensor(), model.state_dict()[p.name])


def test_a_distributed_checkpoint_is_listed_from_its_metadata_alone(tmp_path):
    _dcp_save(tmp_path)
    for data in (tmp_path / "dcp").glob("*.distcp"):
        data.write_bytes(b"")  # the tensors' bytes are gone: listing them must not need them
    info = open_checkpoint(tmp_path / "dcp")
    (o,) = info.optimizers
    assert o.params[0].state["exp_avg"].shape == (3, 4) and o.params[0].state["exp_avg"].dtype == "float32"
    with pytest.raises(LoadError, match="shorter than its metadata"):
        o.params[0].state["exp_avg"].tensor()


class Boom:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_distributed_checkpoint_metadata_that_names_other_classes_is_refused_unexecuted(tmp_path):
    _dcp_save(tmp_path)
    marker = tmp_path / "executed"
    boom = Boom()
    boom.marker = str(marker)
    (tmp_path / "dcp" / ".metadata").write_bytes(pickle.dumps(boom))
    with pytest.raises(LoadError, match="nothing was executed"):
        open_checkpoint(tmp_path / "dcp")
    assert not marker.exists()


def test_inspect_refuses_a_code_running_pickle_in_one_sentence_naming_what_it_calls(tmp_path, capsys):
    """The refusal had carried torch's first line, its advice to load with weights_only=False."""
    marker = tmp_path / "executed"
    boom = Boom()
    boom.marker = str(marker)

    class Shell:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    for name, save, names in (
            ("plain.pt", lambda p: p.write_bytes(pickle.dumps({"state": {0: boom}})), "pathlib.Path.touch"),
            ("zip.pt", lambda p: torch.save({"state": {0: Shell()}, "param_groups": []}, p), os.system.__module__)):
        save(tmp_path / name)
        assert cli.main(["inspect", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("optimlab: Refused ") and name in err and "\n" not in err, err
        assert f"(it names {names}." in err or f"(it names {names})" in err, err
        assert "weights_only" not in err and "nothing was executed" in err
    assert not marker.exists()


def test_inspect_prints_names_shapes_and_norms_as_json(tmp_path, capsys):
    gen, disc, og, od = _gan()
    torch.save({"model": gen.state_dict(), "optimizer": og.state_dict()}, tmp_path / "g.pt")
    assert cli.main(["inspect", str(tmp_path / "g.pt"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    (o,) = s["optimizers"]
    p = o["params"][0]
    assert p["name"] == "0.weight" and p["shape"] == [6, 4]
    want = og.state[gen[0].weight]["exp_avg"]
    assert p["state"]["exp_avg"] == {"shape": [6, 4], "dtype": "float32",
                                     "norm": float(torch.linalg.vector_norm(want, dtype=torch.float64))}
    assert cli.main(["inspect", str(tmp_path / "g.pt")]) == 0
    assert "optimizer at optimizer: Adam/AdamW" in capsys.readouterr().out


def test_inspect_refuses_what_is_not_a_checkpoint_in_one_line(tmp_path, capsys):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert cli.main(["inspect", str(tmp_path / "junk.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("optimlab: ") and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert cli.main(["inspect", str(tmp_path / "empty")]) == 2
    assert "no checkpoint files" in capsys.readouterr().err


def test_a_damaged_file_is_called_unreadable_and_a_legacy_pickle_with_a_class_is_refused_unexecuted(tmp_path):
    (tmp_path / "damaged.pt").write_bytes(b"\x00 not a pickle")
    with pytest.raises(LoadError, match=r"damaged.pt is not a readable torch.save file \(Unsupported operand 0\)$"):
        open_checkpoint(tmp_path / "damaged.pt")
    marker = tmp_path / "executed"
    torch.save({"callbacks": [Trap(marker)]}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(LoadError, match="Refused .*legacy.pt: it holds Python objects"):
        open_checkpoint(tmp_path / "legacy.pt")
    assert not marker.exists()
