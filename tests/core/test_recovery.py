"""core.edits.recovery_state / recover: what the window keeps to rebuild the current branch when
the runner process dies, and the rebuild itself (the window's side: tests/app/test_errors_gui.py)."""
import pickle

import torch

from core import edits
from core.session import Session
from core.spec import GradientSpec, LoadOptimizer, SessionSpec, SetHparam, TensorSpec


def spec():
    return SessionSpec(optimizer="Adam", tensors=(TensorSpec("weight", (3, 3)),),
                       gradient=GradientSpec(kind="objective", objective="quadratic", condition=10.0))


def state_of(s):
    p = s.params["weight"]
    return p.detach().clone(), {k: v.clone() for k, v in s.optimizer.state[p].items()}


def test_a_forked_branch_with_a_load_is_rebuilt_bit_for_bit_where_it_stood(tmp_path):
    s = Session(spec())
    s.run(10)
    saved = s.optimizer.state_dict()
    s.goto(5)
    s.run(3)  # forks branch 1 at step 5
    s.apply(SetHparam(0, "lr", 0.003))
    torch.save(saved, tmp_path / "opt.pt")
    s.apply(LoadOptimizer(path=str(tmp_path / "opt.pt")))  # the loads' data travel once, by key
    s.run(4)
    s.goto(10)  # rewound on branch 1
    st = edits.recovery_state(s)
    assert st["branch"] == 1 and st["step"] == 10 and not st["at_head"] and st["branches"] == 2
    assert st["used"] and set(st["blobs"]) == set(st["used"])
    assert edits.recovery_state(s, have=st["used"])["blobs"] == {}  # what the window has is not sent again
    data = pickle.loads(pickle.dumps((st, st["blobs"])))  # as it travels from the runner process
    r = edits.recover(None, data[0], data[1])
    assert r.step_count == 10 and not r.at_head and r.timeline.branch.end_step == 12
    want_p, want_state = state_of(s)
    got_p, got_state = state_of(r)
    assert torch.equal(got_p, want_p)
    assert all(torch.equal(got_state[k], want_state[k]) for k in want_state)
    assert r.optimizer.param_groups[0]["lr"] == s.optimizer.param_groups[0]["lr"] == 0.001  # the load set it back
    assert r.timeline.current == 1 and sorted(r.timeline.branches) == [0, 1]
    assert r.notice == ("Recovered branch 1 at step 10 and its other 1 branch from their journals "
                        "(their curves ended with the process)")
    got, want = r.timeline.branch.series.view(), s.timeline.branch.series.view()
    assert list(got.step) == list(want.step) and len(got.step) >= 10  # the branch's curves, replayed
    assert [b.text for b in r.breakpoints] == [b.text for b in s.breakpoints]
    # the other branch comes back with its values exact
    s.goto(None, 0)
    r.goto(None, 0)
    assert r.step_count == s.step_count == 10
    assert torch.equal(state_of(r)[0], state_of(s)[0])

    # a document that does not rebuild: the current branch alone, standing where it stood
    broken = dict(data[0], document={"timeline": {"branches": []}})
    r2 = edits.recover(None, broken, data[1])
    assert r2.step_count == 10 and len(r2.timeline.branches) == 1 and torch.equal(state_of(r2)[0], want_p)
    assert r2.notice == ("Recovered branch 1 at step 10 from its journal (now branch 0); "
                         "its other 1 branch ended with the process")


def test_the_other_branches_curves_and_distributions_come_back_with_them():
    """A branch's curves change only while it is the current one: the window is sent them once
    (by signature) and Recover puts them back, so going to that branch shows what it showed."""
    s = Session(spec())
    s.run(12)
    s.goto(4)
    s.run(3)  # branch 1, forked at step 4
    st = edits.recovery_state(s)
    assert len(st["curves"]) == 1 and set(st["curves"]) == set(st["curve_sigs"])
    again = edits.recovery_state(s, have_curves=st["curve_sigs"])
    assert again["curves"] == {} and again["curve_sigs"] == st["curve_sigs"]  # not sent twice
    data = pickle.loads(pickle.dumps(st))
    r = edits.recover(None, data, {}, data["curves"])
    assert r.notice == "Recovered branch 1 at step 7 and its other 1 branch from their journals"
    r.goto(None, 0)
    s.goto(None, 0)
    got, want = r.timeline.branch.series.view(), s.timeline.branch.series.view()
    assert list(got.step) == list(want.step) and len(got.step) == 12
    assert [float(v) for v in got.loss] == [float(v) for v in want.loss]
    s.goto(None, 1)
    s.run(2)  # branch 1 goes on; then branch 0 is current: branch 1's signature changes
    s.goto(None, 0)
    later = edits.recovery_state(s, have_curves=st["curve_sigs"])
    assert set(later["curves"]) == set(later["curve_sigs"]) and later["curve_sigs"] != st["curve_sigs"]


def test_a_recovery_file_brings_back_every_branch_with_its_curves_and_opens_by_hand_as_the_current_one(tmp_path):
    """What a window writes to disk should its own process end: a .json session of the current
    branch that also holds the timeline and the other branches' curves; reopened, every branch
    is there (values exact, curves as they were); opened as a plain .json session, the current
    branch alone, the curves not among its data."""
    from core import session_file
    s = Session(spec())
    s.run(12)
    s.goto(5)
    s.run(4)  # branch 1 at step 9
    s.apply(SetHparam(0, "lr", 0.003))
    s.run(2)
    s.goto(10)  # rewound on branch 1
    st = edits.recovery_state(s)
    path = tmp_path / "session-1.json"
    path.write_bytes(session_file.recovery_json(st["spec"], st["journal"], st["blobs"], st["step"],
                                                timeline=st["document"]["timeline"], curves=st["curves"]))
    r = edits.reopen_recovery(None, path)
    assert r.timeline.current == 1 and r.step_count == 10 and not r.at_head and sorted(r.timeline.branches) == [0, 1]
    assert torch.equal(state_of(r)[0], state_of(s)[0])
    r.goto(None, 0)
    s.goto(None, 0)
    got, want = r.timeline.branch.series.view(), s.timeline.branch.series.view()
    assert list(got.step) == list(want.step) == list(range(1, 13))
    assert [float(v) for v in got.loss] == [float(v) for v in want.loss]
    assert torch.equal(state_of(r)[0], state_of(s)[0])
    plain = session_file.load_session(path)
    assert plain.step_count == 10 and len(plain.timeline.branches) == 1
    assert session_file.CURVES_BLOB not in plain.blobs
