"""The seed's walkthrough (section 3) is the first acceptance test."""
from pathlib import Path

import pytest
import torch

from core import spec as specmod
from core.session import Session
from core.spec import AddGroup, SessionSpec, Step, TensorSpec, ZeroGrad

EXAMPLE = Path(__file__).resolve().parents[2] / "resources" / "examples" / "seed_walkthrough.json"
START = [[-0.0947, 1.4217], [-1.3000, -1.0501]]


def load():
    return specmod.loads(EXAMPLE.read_text())


def test_first_step_moves_weight_by_lr():
    spec, journal = load()
    s = Session(spec, journal[:1])
    expected = torch.tensor([[-0.1947, 1.3217], [-1.4000, -1.1501]])
    assert torch.allclose(s.params["weight"].detach(), expected, atol=1e-4)
    assert torch.equal(s.optimizer.state[s.params["weight"]]["momentum_buffer"], torch.ones(2, 2))


def test_zero_grad_keeps_a_zero_gradient_not_none():
    spec, journal = load()
    s = Session(spec, journal[:2])
    assert torch.equal(s.params["weight"].grad, torch.zeros(2, 2))


def test_walkthrough_reproduces_the_seed_printout():
    spec, journal = load()
    s = Session(spec, journal)
    w = s.params["weight"].detach()
    seed_printed = torch.tensor([[-1.0900, 0.4263], [-2.2953, -2.0455]])
    assert torch.allclose(w, seed_printed, atol=1e-4)
    buf = s.optimizer.state[s.params["weight"]]["momentum_buffer"]
    assert torch.allclose(buf, torch.full((2, 2), 0.9 ** 50), atol=1e-6)
    assert f"{buf[0, 0].item():.4f}" == "0.0052"
    # weight2 never got a gradient: no state, never moved
    w2 = s.params["weight2"]
    assert w2.grad is None and w2 not in s.optimizer.state
    sd = s.optimizer.state_dict()
    assert sd["param_groups"][1]["lr"] == 0.0001 and sd["param_groups"][1]["nesterov"] is True
    assert sd["param_groups"][1]["momentum"] == 0.9 and sd["param_groups"][1]["params"] == [1]
    assert list(sd["state"]) == [0]


def test_walkthrough_equals_plain_script_bit_for_bit():
    spec, journal = load()
    s = Session(spec, journal)
    weight = torch.tensor(START, requires_grad=True)
    weight.grad = torch.ones((2, 2))
    optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
    optimizer.step()
    optimizer.zero_grad(set_to_none=False)
    weight2 = torch.tensor(spec_values(journal), requires_grad=True)
    optimizer.add_param_group({"params": weight2, "lr": 0.0001, "nesterov": True})
    for _ in range(50):
        optimizer.step()
    assert torch.equal(s.params["weight"], weight)
    assert torch.equal(s.params["weight2"], weight2)
    assert torch.equal(s.optimizer.state[s.params["weight"]]["momentum_buffer"],
                       optimizer.state[weight]["momentum_buffer"])
    assert s.optimizer.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]


def spec_values(journal):
    return [a for a in journal if isinstance(a, AddGroup)][0].tensors[0].values


def test_with_set_to_none_nothing_moves_after_the_first_step():
    spec, journal = load()
    journal = [a if not isinstance(a, ZeroGrad) else ZeroGrad(True) for a in journal]
    s = Session(spec, journal)
    assert s.params["weight"].grad is None
    assert torch.allclose(s.params["weight"].detach(), torch.tensor([[-0.1947, 1.3217], [-1.4000, -1.1501]]), atol=1e-4)


def test_journal_merges_consecutive_steps():
    spec, _ = load()
    s = Session(spec)
    for _ in range(3):
        s.step(1)
    s.apply(ZeroGrad())
    s.step(2)
    assert s.journal == [Step(3), ZeroGrad(), Step(2)]


@pytest.mark.parametrize("bad, message", [
    (AddGroup((TensorSpec("weight", (2, 2)),)), "more than one parameter group"),
    (AddGroup((TensorSpec("w3", (2,)),), {"lr": -1.0}), "Invalid learning rate"),
    (AddGroup((TensorSpec("w3", (2,)),), {"bogus": 1}), "no hyperparameter 'bogus'"),
    (AddGroup(()), "empty"),
])
def test_bad_add_group_is_refused_and_changes_nothing(bad, message):
    spec, journal = load()
    s = Session(spec, journal[:2])
    before = s.optimizer.state_dict()
    with pytest.raises(ValueError, match=message):
        s.apply(bad)
    assert len(s.optimizer.param_groups) == 1 and list(s.params) == ["weight"]
    assert s.optimizer.state_dict()["param_groups"] == before["param_groups"]
    assert len(s.journal) == 2


def test_spec_refuses_tensor_in_two_groups_and_empty_group():
    t = TensorSpec("w", (2,))
    with pytest.raises(ValueError, match="more than one group"):
        SessionSpec(tensors=[t], groups=[specmod.GroupSpec(("w",)), specmod.GroupSpec(("w",))]).check()
    with pytest.raises(ValueError, match="empty"):
        SessionSpec(tensors=[t], groups=[specmod.GroupSpec(("w",)), specmod.GroupSpec(())]).check()
