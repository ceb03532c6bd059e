"""bfloat16 and float16 parameters, and the advanced optimizer options, on the CPU.

A low-precision session equals a plain script bit for bit; what is shown of it is a float32
copy; what is saved keeps its dtype. foreach and fused run where torch allows them and
equal a plain script with the same flags; capturable (CUDA only) and differentiable are
refused in one sentence wherever they enter (spec, edit, new group, load).
"""
import pytest
import torch

from core import catalogue, files, limits, session_file
from core.observe import make_snapshot
from core.session import Session
from core.spec import (AddGroup, GradientSpec, ManualGrad, SessionSpec, SetHparam, SpecError, Step, TensorSpec,
                       ZeroGrad)
from tests.gpu.plain import ALL, Plain, assert_same, kinds_for, make_spec, same_bits

LOW = ["bfloat16", "float16"]


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("name", ALL)
def test_a_low_precision_session_equals_a_plain_script(name, dtype):
    for kind in kinds_for(name):
        s = Session(make_spec(name, kind, dtype=dtype))
        s.set_breakpoints([])  # float16 Adam overflows (eps 1e-8 is 0 there), as in the script: go on
        plain = Plain(name, kind, dtype=dtype)
        for _ in range(4):
            plain.step()
        s.apply(Step(4))
        assert all(p.dtype == getattr(torch, dtype) for p in s.param_list)
        assert_same(s, plain.opt, f"{name}/{kind}/{dtype}")


@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_tensors_are_shown_as_exact_float32_copies(dtype):
    s = Session(make_spec("Adam", "manual", dtype=dtype))
    s.step(3)
    snap = make_snapshot(s, 1)
    t = snap.tensor("t0")
    p = s.params["t0"]
    assert t.value.dtype == dtype and t.value.values.dtype == "float32"
    assert torch.equal(torch.from_numpy(t.value.values.copy()), p.detach().float())
    assert t.state["exp_avg"].dtype == dtype
    assert p.dtype == getattr(torch, dtype)  # the live tensor is untouched


@pytest.mark.parametrize("dtype", LOW)
def test_saved_sessions_and_state_dicts_keep_the_dtype(dtype, tmp_path):
    s = Session(make_spec("Adam", "manual", dtype=dtype, hparams={"eps": 1e-3}))  # 1e-8 is 0 in float16
    s.step(3)
    session_file.save_session(s, tmp_path / "s.optimlab")
    files.save_optimizer(s, tmp_path / "opt.pt")
    files.save_params(s, tmp_path / "p.pt")
    sd = torch.load(tmp_path / "opt.pt", weights_only=True)
    assert sd["state"][0]["exp_avg"].dtype == getattr(torch, dtype)
    assert torch.load(tmp_path / "p.pt", weights_only=True)["t0"].dtype == getattr(torch, dtype)
    r = session_file.load_session(tmp_path / "s.optimlab")
    s.step(2)
    r.step(2)
    assert all(same_bits(a, b) for a, b in zip(s.param_list, r.param_list))
    assert torch.isfinite(s.param_list[0]).all()
    r.load_optimizer_state(sd)  # a state_dict saved in bfloat16/float16 loads back into it


def test_an_unknown_dtype_is_refused_naming_the_choices():
    with pytest.raises(SpecError, match="Invalid dtype 'int8' for w: use float32, float64, bfloat16, float16"):
        Session(SessionSpec(tensors=[TensorSpec("w", (2,), dtype="int8")]))


def test_the_memory_check_counts_two_bytes_a_low_precision_number():
    assert limits.tensor_bytes(TensorSpec("w", (1000,), dtype="bfloat16")) == 2000
    assert limits.tensor_bytes(TensorSpec("w", (1000,), dtype="float16")) == 2000
    assert limits.tensor_bytes(TensorSpec("w", (1000,), dtype="float64")) == 8000


# ----- advanced options -----

FUSED = ["Adam", "AdamW", "SGD", "Adagrad"]  # torch's CPU fused kernels


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("flags", [{"foreach": True}, {"fused": True}, {"foreach": False}])
@pytest.mark.parametrize("name", FUSED)
def test_fused_and_foreach_equal_a_plain_script_with_the_same_flags(name, flags, dtype):
    s = Session(make_spec(name, "manual", dtype=dtype, hparams=flags))
    plain = Plain(name, "manual", dtype=dtype, hparams=flags)
    for _ in range(5):
        plain.step()
    s.apply(Step(5))
    assert_same(s, plain.opt, f"{name} {flags}")


def test_capturable_on_the_cpu_is_refused_in_one_sentence_wherever_it_enters(tmp_path):
    spec = SessionSpec(optimizer="Adam", tensors=[TensorSpec("w", (2,), grad=ManualGrad())])
    with pytest.raises(SpecError, match=r"Adam cannot run with capturable=True on cpu") as e:
        Session(SessionSpec(optimizer="Adam", hparams={"capturable": True}, tensors=spec.tensors))
    assert "\n" not in str(e.value) and "Traceback" not in str(e.value)
    s = Session(spec)
    s.step(1)
    before = s.position()
    with pytest.raises(SpecError, match="capturable=True on cpu"):
        s.apply(SetHparam(0, "capturable", True))
    with pytest.raises(SpecError, match="capturable=True on cpu"):
        s.apply(AddGroup((TensorSpec("v", (2,)),), {"capturable": True}))
    sd = s.optimizer.state_dict()
    sd["param_groups"][0]["capturable"] = True
    with pytest.raises(files.LoadError, match="capturable=True on cpu"):
        s.load_optimizer_state(sd)
    assert s.position() == before and not s.optimizer.param_groups[0]["capturable"]
    with pytest.raises(ValueError, match="capturable=True on cpu"):
        catalogue.validate_hparams("Adam", {"capturable": True}, device="cpu")


def test_differentiable_is_refused_for_a_sessions_leaf_tensors():
    with pytest.raises(SpecError, match="differentiable=True.*leaves"):
        Session(SessionSpec(optimizer="SGD", hparams={"differentiable": True},
                            tensors=[TensorSpec("w", (2,), grad=ManualGrad())]))


def test_fused_is_tried_with_the_sessions_dtypes():
    # the trial step runs on the parameters' own dtypes: a float64 fused Adam on the CPU works
    s = Session(SessionSpec(optimizer="Adam", hparams={"fused": True},
                            tensors=[TensorSpec("w", (2,), dtype="float64", grad=ManualGrad())],
                            gradient=GradientSpec("manual", when="every_step")))
    s.step(2)
    s.apply(ZeroGrad())
    assert s.params["w"].dtype == torch.float64
