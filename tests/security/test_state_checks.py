"""A state_dict or parameters file is checked key by key and value by value before anything
is applied: what torch would drop, mis-map or fail on later is refused in one sentence, what
torch maps correctly loads, and a refusal leaves no trace in the session."""
import io
import warnings

import pytest
import torch

from core import catalogue, edits, files
from core.engine import Engine
from core.session import Session
from core.spec import LoadOptimizer, SetHparam, SpecError

from .state_helpers import (assert_unchanged, cli, frozen, one_sentence, same, session, session_spec,
                            spec_file, state_of)


def quantized(*shape) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch says quantized tensors are deprecated: they still load
        return torch.quantize_per_tensor(torch.zeros(shape), 0.1, 0, torch.quint8)


def refused(s, sd, *words, params=False) -> str:
    """Loading ``sd`` is refused with one sentence naming ``words``, and nothing changes."""
    before = frozen(s)
    with pytest.raises(files.LoadError) as e:
        (s.load_params if params else s.load_optimizer_state)(sd)
    msg = str(e.value)
    assert one_sentence(msg), msg
    for w in words:
        assert w in msg, msg
    assert_unchanged(s, before)
    return msg


# ----- legitimate files load, as in plain PyTorch -----

@pytest.mark.parametrize("name, hp", [(n, {}) for n in sorted(catalogue.optimizer_classes())] + [
    ("Adam", {"amsgrad": True}), ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("RMSprop", {"momentum": 0.9, "centered": True}), ("LBFGS", {"line_search_fn": "strong_wolfe"}),
    ("Adagrad", {"fused": True}), ("Adam", {"decoupled_weight_decay": True, "weight_decay": 0.1})])
def test_every_optimizers_own_state_dict_loads_and_continues_bit_for_bit(name, hp):
    a = session(name, 3, **hp)
    b = session(name, 0, **hp)
    b.load_params(files.params_state(a))
    b.load_optimizer_state(files._copy_state(a.optimizer.state_dict()))
    b.grad_gen.set_state(a.grad_gen.get_state())  # SparseAdam's manual gradients draw nothing, but keep it exact
    assert same(b.optimizer.state_dict(), a.optimizer.state_dict())
    a.step(2)
    b.step(2)
    assert same(files.params_state(b), files.params_state(a))
    assert same(b.optimizer.state_dict(), a.optimizer.state_dict())


def test_renumbered_parameter_ids_map_by_position_as_torch_does():
    sd = state_of("Adam")
    swapped = {"state": {1: sd["state"][0], 0: sd["state"][1]},
               "param_groups": [{**sd["param_groups"][0], "params": [1, 0]}]}
    # plain torch: ids map to parameters by their position in the groups
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(3, 2, requires_grad=True)
    plain = torch.optim.Adam([a, b], lr=1e-3)
    plain.load_state_dict(files._copy_state(swapped))
    s = session("Adam")
    s.load_optimizer_state(files._copy_state(swapped))
    assert same(s.optimizer.state[s.params["a"]], plain.state[a])
    assert same(s.optimizer.state[s.params["b"]], plain.state[b])
    assert torch.equal(s.optimizer.state[s.params["b"]]["exp_avg"], sd["state"][1]["exp_avg"])
    # any distinct whole numbers do, as in torch
    far = {"state": {70: sd["state"][0], 9: sd["state"][1]},
           "param_groups": [{**sd["param_groups"][0], "params": [70, 9]}]}
    s.load_optimizer_state(far)
    assert torch.equal(s.optimizer.state[s.params["a"]]["exp_avg"], sd["state"][0]["exp_avg"])
    assert list(s.optimizer.state_dict()["state"]) == [0, 1]


def test_state_dict_from_an_older_torch_without_newer_group_keys_loads():
    sd = state_of("Adam")
    for g in sd["param_groups"]:
        for k in ("decoupled_weight_decay", "fused", "capturable", "differentiable", "foreach"):
            del g[k]  # torch's __setstate__ fills these in
    s = session("Adam")
    s.load_optimizer_state(sd)
    assert s.optimizer.param_groups[0]["decoupled_weight_decay"] is False
    s.step(1)


def test_sgd_momentum_buffer_none_from_older_torch_loads():
    sd = state_of("SGD", lr=0.1)
    sd["state"] = {0: {"momentum_buffer": None}, 1: {"momentum_buffer": None}}
    s = session("SGD", lr=0.1)
    s.load_optimizer_state(sd)
    s.step(1)


def test_pickle_protocols_2_to_5_load_in_both_formats_without_warnings(tmp_path):
    sd = state_of("Adam")
    for protocol in (2, 3, 4, 5):
        for zipped in (True, False):
            p = tmp_path / f"p{protocol}{zipped}.pt"
            torch.save(sd, p, pickle_protocol=protocol, _use_new_zipfile_serialization=zipped)
            s = session("Adam")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                assert edits.load_torch_file(s, p) == "optimizer state_dict"
            assert [str(w.message) for w in caught] == []
            assert same(s.optimizer.state_dict(), sd)


def test_protocol_4_checkpoint_with_shared_tensors_keeps_them_shared(tmp_path):
    t = torch.arange(6.0).reshape(3, 2)
    torch.save({"model_state_dict": {"a": torch.zeros(2), "b": t}, "alias": t}, tmp_path / "c.pt", pickle_protocol=4)
    obj = files.torch_read(tmp_path / "c.pt")
    assert torch.equal(obj["model_state_dict"]["b"], t)
    assert obj["alias"].data_ptr() == obj["model_state_dict"]["b"].data_ptr()


def test_nan_weights_and_moments_are_legitimate_data_and_load():
    s = session("Adam", 2)
    p = files.params_state(s)
    p["a"][0] = float("nan")
    sd = files._copy_state(s.optimizer.state_dict())
    sd["state"][1]["exp_avg"][0, 0] = float("inf")
    t = session("Adam")
    t.load_params(p)
    t.load_optimizer_state(sd)
    assert torch.isnan(t.params["a"][0]) and torch.isinf(t.optimizer.state[t.params["b"]]["exp_avg"][0, 0])


# ----- ids: what torch would drop or mis-map -----

def test_parameter_ids_stored_as_text_are_refused():
    sd = state_of("Adam")
    text_state = {**sd, "state": {str(k): v for k, v in sd["state"].items()}}
    msg = refused(session("Adam"), text_state, "text", "'0'", "dropped")
    assert msg.startswith("The state_dict numbers its parameters with text")
    text_groups = {**sd, "param_groups": [{**sd["param_groups"][0], "params": ["0", "1"]}]}
    refused(session("Adam"), text_groups, "text", "'0'")


def test_ids_torch_would_mis_map_are_refused():
    sd = state_of("Adam")
    g = sd["param_groups"][0]
    refused(session("Adam"), {**sd, "param_groups": [{**g, "params": [0, 0]}]}, "id 0 twice")
    refused(session("Adam"), {**sd, "state": {**sd["state"], 5: sd["state"][0]}}, "parameter 5", "no param_group")
    refused(session("Adam"), {**sd, "param_groups": [{**g, "params": [True, 1]}]}, "True", "whole numbers")
    refused(session("Adam"), {**sd, "param_groups": [{**g, "params": [0.0, 1]}]}, "0.0", "whole numbers")


# ----- state values: key, type, dtype, shape -----

@pytest.mark.parametrize("value, words", [
    (torch.zeros(3, 2).to_sparse(), ["exp_avg", "parameter 1 (b)", "sparse"]),
    (torch.zeros(3, 2, device="meta"), ["exp_avg", "parameter 1 (b)", "meta"]),
    (quantized(3, 2), ["exp_avg", "quantized"]),
    (torch.zeros(3, 2, dtype=torch.complex64), ["exp_avg", "complex"]),
    (torch.zeros(3, 2, dtype=torch.int64), ["exp_avg", "int64", "floating-point"]),
    (torch.zeros(6), ["exp_avg", "[6]", "[3, 2]"]),
    ([1.0, 2.0], ["exp_avg", "list", "tensor"]),
    ("x", ["exp_avg", "str", "tensor"]),
    ({"nested": torch.zeros(3, 2)}, ["exp_avg", "dict"]),
])
def test_state_values_adam_does_not_keep_are_refused_naming_parameter_and_key(value, words):
    sd = state_of("Adam")
    sd["state"][1]["exp_avg"] = value
    refused(session("Adam"), sd, *words)


def test_int_momentum_buffer_is_refused():
    sd = state_of("SGD", lr=0.1, momentum=0.9)
    sd["state"][0]["momentum_buffer"] = torch.zeros(2, dtype=torch.int32)
    refused(session("SGD", lr=0.1, momentum=0.9), sd, "momentum_buffer", "parameter 0 (a)", "int32")


@pytest.mark.parametrize("step, words", [
    (torch.tensor(-1.0), ["step", "-1.0", "from 0 up"]),
    (torch.tensor(float("nan")), ["step", "nan"]),
    (torch.tensor([1.0, 2.0]), ["step", "[2]", "single number"]),
    ("3", ["step", "str", "whole number"]),
    (True, ["step", "bool"]),
    (2 ** 70, ["step", "whole number"]),
])
def test_step_counts_are_type_checked(step, words):
    sd = state_of("Adam")
    sd["state"][0]["step"] = step
    refused(session("Adam"), sd, *words)


def test_step_as_a_plain_number_from_older_torch_loads():
    sd = state_of("Adam")
    for entry in sd["state"].values():
        entry["step"] = 3
    s = session("Adam")
    s.load_optimizer_state(sd)
    s.step(1)


def test_unknown_and_missing_state_keys_are_refused():
    sd = state_of("Adam")
    sd["state"][0]["velocity"] = torch.zeros(2)
    refused(session("Adam"), sd, "'velocity'", "not something Adam keeps")
    sd = state_of("Adam")
    del sd["state"][1]["exp_avg_sq"]
    refused(session("Adam"), sd, "lacks 'exp_avg_sq'", "parameter 1 (b)")
    sd = state_of("Adam", amsgrad=True)
    del sd["state"][0]["max_exp_avg_sq"]
    refused(session("Adam", amsgrad=True), sd, "max_exp_avg_sq")
    sd = state_of("Adafactor")
    sd["state"][1]["variance"] = torch.zeros(3, 2)  # Adafactor factors a matrix's variance: row_var, col_var
    refused(session("Adafactor"), sd, "'variance'", "shape [3, 2]")
    sd = state_of("Adagrad")
    del sd["state"][1]  # as torch's own state_dict for a parameter added by add_param_group, not yet stepped
    s = session("Adagrad")
    s.load_optimizer_state(sd)
    s.step(1)
    assert set(s.optimizer.state[s.params["b"]]) == {"step", "sum"}


@pytest.mark.parametrize("key, value, words", [
    ("n_iter", "x", ["n_iter", "str", "whole number"]),
    ("func_evals", -1, ["func_evals", "-1"]),
    ("t", "x", ["'t'", "number"]),
    ("H_diag", torch.zeros(2), ["H_diag", "[2]"]),
    ("d", torch.zeros(5), ["'d'", "[5]", "6 numbers"]),
    ("old_dirs", [torch.zeros(6)] * 7, ["different lengths"]),
    ("ro", [torch.tensor(1.0), "x"], ["'ro'", "str"]),
    ("al", [None] * 3, ["'al'", "history_size 100"]),
    ("weird", 1, ["'weird'", "not something LBFGS keeps"]),
])
def test_lbfgs_history_is_type_checked_before_the_next_step_would_fail(key, value, words):
    sd = state_of("LBFGS")
    assert sd["state"][0]["n_iter"] >= 1  # the history is in use
    sd["state"][0][key] = value
    refused(session("LBFGS"), sd, *words)


def test_lbfgs_state_that_lacks_its_history_after_the_first_iteration_is_refused():
    sd = state_of("LBFGS")
    del sd["state"][0]["old_dirs"]
    refused(session("LBFGS"), sd, "lacks 'old_dirs'")


# ----- hyperparameters: the form's rules, and which optimizer wrote it -----

@pytest.mark.parametrize("name, key, value, said", [
    ("Adam", "lr", -1.0, "Invalid learning rate: -1.0"),
    ("Adam", "betas", (1.5, 0.9), "Invalid beta parameter at index 0: 1.5"),
    ("SGD", "nesterov", True, "Nesterov momentum requires a momentum and zero dampening"),
    ("Adam", "betas", ("a", 0.9), "betas must hold numbers"),
    ("Adam", "amsgrad", "yes", "amsgrad must be True or False"),
    ("Adam", "foreach", "x", "foreach must be True or False"),
    ("LBFGS", "history_size", 2.5, "history_size must be a whole number"),
    ("Adam", "capturable", True, "Adam cannot run with capturable=True on cpu"),
    ("Adam", "differentiable", True, "a session's tensors are leaves"),
])
def test_loaded_hyperparameters_pass_the_forms_validation(name, key, value, said):
    sd = state_of(name, lr=0.1)
    sd["param_groups"][0][key] = value
    msg = refused(session(name, lr=0.1), sd, said, "param_group 0")
    with pytest.raises(ValueError) as e:  # the same sentence the form gives
        catalogue.validate_hparams(name, {key: value}, device="cpu")
    assert str(e.value) in msg


def test_adamw_state_dict_is_refused_by_an_adam_session_and_the_other_way_round():
    assert catalogue.group_keys("Adam") == catalogue.group_keys("AdamW")  # the keys cannot tell them apart
    msg = refused(session("Adam"), state_of("AdamW"), "AdamW")
    assert msg == "This state_dict is from AdamW, but the session uses Adam"
    msg = refused(session("AdamW"), state_of("Adam"), "Adam")
    assert msg == "This state_dict is from Adam, but the session uses AdamW"
    # Adam with decoupled weight decay runs AdamW's maths: there the file fits
    s = session("Adam", decoupled_weight_decay=True, weight_decay=0.01)
    s.load_optimizer_state(state_of("AdamW"))
    s.step(1)


def test_state_dict_of_an_optimizer_with_other_keys_is_named():
    assert refused(session("SGD"), state_of("RMSprop"), "RMSprop") == \
        "This state_dict is from RMSprop, but the session uses SGD"


def test_capturable_on_the_cpu_is_refused_at_the_spec_the_form_and_set_hparam():
    with pytest.raises(SpecError) as e:
        Session(session_spec("Adam", capturable=True))
    assert str(e.value).startswith("Adam cannot run with capturable=True on cpu") and one_sentence(str(e.value))
    s = session("Adam")
    before = frozen(s)
    with pytest.raises(SpecError, match="capturable=True on cpu"):
        s.apply(SetHparam(0, "capturable", True))
    assert_unchanged(s, before)
    if catalogue.devices() == ["cpu"]:  # the form knows no device: refused where none here can run it
        with pytest.raises(ValueError, match="capturable=True on cpu"):
            catalogue.validate_hparams("Adam", {"capturable": True})
    with pytest.raises(SpecError, match="differentiable=True"):
        Session(session_spec("SGD", differentiable=True))
    Session(session_spec("Adam", fused=True)).step(2)  # torch runs fused Adam on the CPU
    Session(session_spec("SGD", foreach=True)).step(2)


def test_capturable_on_the_cpu_through_the_cli_is_one_line(tmp_path, capsys):
    code, out, err = cli(capsys, "run", spec_file(tmp_path, "Adam", capturable=True), "--steps", "2")
    assert code == 2 and out == "" and err.count("\n") == 1 and "capturable=True on cpu" in err


# ----- parameters files -----

@pytest.mark.parametrize("params, words", [
    ({"a": torch.zeros(2), "b": torch.zeros(3, 2).to_sparse()}, ["b", "sparse"]),
    ({"a": torch.zeros(2), "b": torch.zeros(3, 2, device="meta")}, ["b", "meta"]),
    ({"a": torch.zeros(2), "b": quantized(3, 2)}, ["b", "quantized"]),
    ({"a": torch.zeros(2), "b": torch.zeros(3, 2, dtype=torch.complex64)}, ["b", "complex64"]),
    ({"a": torch.zeros(2), "b": torch.zeros(3, 2, dtype=torch.int64)}, ["b", "int64", "float32"]),
    ({"a": torch.zeros(2), "b": torch.zeros(6)}, ["b", "[6]", "[3, 2]"]),
    ({"a": torch.zeros(2), 0: torch.zeros(3, 2)}, ["key 0", "int", "named by text"]),
    ({"a": torch.zeros(2), "b": [[0.0, 0.0]] * 3}, ["b", "list", "name -> tensor"]),
    ({"a": torch.zeros(2), "b": torch.zeros(3, 2), "c": torch.zeros(1)}, ["c"]),
])
def test_params_that_do_not_fit_are_refused_before_any_tensor_is_written(params, words):
    s = session("Adam", 2)
    refused(s, params, *words, params=True)


def test_a_refused_file_leaves_no_trace_in_the_sessions_stored_copies(tmp_path):
    s = session("Adam", 2)
    good = files.params_state(s)
    bad_params = {"a": good["a"] + 1, "b": torch.zeros(3, 2, device="meta")}  # the first would be written
    bad_state = state_of("Adam")
    bad_state["param_groups"][0]["lr"] = -1.0
    cases = [("params.pt", bad_params, "meta"),
             ("opt.pt", bad_state, "Invalid learning rate"),
             ("ckpt.pt", {"model_state_dict": good, "optimizer_state_dict": bad_state}, "Invalid learning rate"),
             ("ckpt2.pt", {"model_state_dict": bad_params, "optimizer_state_dict": state_of("Adam")}, "meta")]
    for fname, obj, word in cases:
        torch.save(obj, tmp_path / fname)
        before = frozen(s)
        with pytest.raises(files.LoadError) as e:
            edits.load_torch_file(s, tmp_path / fname)
        assert word in str(e.value) and fname in str(e.value) and one_sentence(str(e.value))
        assert_unchanged(s, before)
        assert s.blobs == {}
    torch.save({"model_state_dict": good, "optimizer_state_dict": state_of("Adam")}, tmp_path / "fine.pt")
    assert edits.load_torch_file(s, tmp_path / "fine.pt") == "checkpoint"
    assert sorted(k.split("-")[0] for k in s.blobs) == ["optimizer", "params"]  # stored once accepted


def test_a_load_that_fails_after_its_checks_is_undone(tmp_path, monkeypatch):
    """Even past the checks (say, out of memory while copying), the session comes back whole."""
    s = session("Adam", 2)
    torch.save({"model_state_dict": files.params_state(s), "optimizer_state_dict": state_of("Adam")}, tmp_path / "c.pt")
    before = frozen(s)

    def out_of_memory(self, sd):
        raise MemoryError("no room")
    monkeypatch.setattr(Engine, "load_params", out_of_memory)
    with pytest.raises(MemoryError):
        edits.load_torch_file(s, tmp_path / "c.pt")
    assert_unchanged(s, before)
    assert s.blobs == {}


def test_string_keyed_state_is_never_saved_back_mixed(tmp_path):
    sd = state_of("Adam")
    torch.save({**sd, "state": {str(k): v for k, v in sd["state"].items()}}, tmp_path / "text.pt")
    s = session("Adam")
    with pytest.raises(files.LoadError):
        s.apply(LoadOptimizer(path=str(tmp_path / "text.pt")))
    files.save_optimizer(s, tmp_path / "out.pt")
    keys = list(torch.load(tmp_path / "out.pt", weights_only=True)["state"])
    assert all(isinstance(k, int) for k in keys)


def test_cli_refuses_bad_state_with_one_line_and_exit_2(tmp_path, capsys):
    sd = state_of("Adam")
    sd["param_groups"][0]["betas"] = (1.5, 0.9)
    torch.save(sd, tmp_path / "bad.pt")
    code, out, err = cli(capsys, "run", spec_file(tmp_path), "--load-optimizer", tmp_path / "bad.pt", "--steps", "1")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "bad.pt" in err and "Invalid beta parameter at index 0: 1.5" in err
    buf = io.BytesIO()
    torch.save({"a": torch.zeros(2), "b": torch.zeros(3, 2).to_sparse()}, buf)
    (tmp_path / "sparse.pt").write_bytes(buf.getvalue())
    code, out, err = cli(capsys, "run", spec_file(tmp_path), "--load-params", tmp_path / "sparse.pt")
    assert code == 2 and err.count("\n") == 1 and "sparse" in err
