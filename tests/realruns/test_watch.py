"""optimlab.watch in one process: frames equal the optimizer's tensors; pause, step and resume hold
the training thread; a listener that leaves releases it; nothing is captured with no one listening."""
import threading
import time

import numpy as np
import pytest
import torch

from core.listen import Listener
from core.watch import Watch


def _until(cond, seconds=20.0, what="condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Trainer:
    """A user's loop on a thread: steps until told to stop; records the losses it reported."""

    def __init__(self, model, opt, w):
        self.model, self.opt, self.w = model, opt, w
        self.losses = []
        self.stop = threading.Event()
        self.x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
        self.thread = threading.Thread(target=self.run, daemon=True)

    def one(self):
        self.opt.zero_grad()
        loss = self.model(self.x).pow(2).mean()
        loss.backward()
        self.w.report(loss=loss)
        self.losses.append(loss.detach().clone())
        self.opt.step()

    def run(self):
        while not self.stop.is_set():
            self.one()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.w.close()  # releases a held step
        self.thread.join(10)


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.01}])
    w = Watch(opt, model=model, name="unit", max_hz=200)
    yield model, opt, w
    w.close()


def test_a_paused_frame_holds_every_tensor_gradient_and_state_entry_equal_to_torch(setup):
    model, opt, w = setup
    with Listener(w.address) as lst, Trainer(model, opt, w):
        _until(lambda: lst.latest() is not None, what="a first frame")
        lst.pause()
        held = _until(lambda: lst.status()["held_at"], what="the hold")
        f = _until(lambda: (f := lst.latest()) is not None and not f.running and f.step == held and f, what="frame")
        # the training thread is held inside step(): its tensors are the frame's
        named = dict(model.named_parameters())
        assert [t.name for t in f.tensors] == ["0.weight", "0.bias", "2.weight", "2.bias"]
        for t in f.tensors:
            p = named[t.name]
            assert np.array_equal(t.value.values, p.detach().numpy()) and t.value.exact
            assert np.array_equal(t.grad.values, p.grad.numpy())
            st = opt.state[p]
            assert set(t.state) == set(st)
            for k in ("exp_avg", "exp_avg_sq"):
                assert np.array_equal(t.state[k].values, st[k].numpy())
        assert [g.hparams["lr"] for g in f.groups] == [0.001, 0.01]
        assert [g.names for g in f.groups] == [("0.weight", "0.bias"), ("2.weight", "2.bias")]
        assert f.optimizer == "Adam" and f.step == w.step


def test_the_curve_holds_every_reported_loss_at_its_step(setup):
    model, opt, w = setup
    with Listener(w.address) as lst, Trainer(model, opt, w) as tr:
        _until(lambda: lst.latest() is not None, what="a first frame")
        lst.pause()
        held = _until(lambda: lst.status()["held_at"], what="the hold")
        f = _until(lambda: (f := lst.latest()) is not None and f.step == held and f, what="frame")
        h = f.history
        assert h.bucket == 1 and h.step[-1] == held
        assert np.array_equal(h.loss, np.array([float(x) for x in tr.losses[:held]]))
        assert f.loss == float(tr.losses[held - 1])


class MeasuringTrainer(Trainer):
    """Also records each step's gradient norm, update norm and update/weight ratio per group,
    computed from the tensors around ``opt.step()`` as a user would check them."""

    def __init__(self, *a):
        super().__init__(*a)
        self.norms = {}  # step -> (grad norm, update norm, (ratio per group))

    def one(self):
        self.before = [[p.detach().clone() for p in g["params"]] for g in self.opt.param_groups]
        super().one()
        self.norms[self.w.step] = self.measure()

    def measure(self):
        """The norms of the step just taken (also while it is held inside ``opt.step()``)."""
        groups = [g["params"] for g in self.opt.param_groups]
        f64 = [[(p.detach().double(), b.double(), p.grad.double()) for p, b in zip(ps, bs)]
               for ps, bs in zip(groups, self.before)]
        flat = [x for g in f64 for x in g]
        grad = sum(float((gr * gr).sum()) for _, _, gr in flat) ** 0.5
        upd = [sum(float(((p - b) ** 2).sum()) for p, b, _ in g) ** 0.5 for g in f64]
        size = [sum(float((p * p).sum()) for p, _, _ in g) ** 0.5 for g in f64]
        return grad, sum(u * u for u in upd) ** 0.5, tuple(u / n for u, n in zip(upd, size))


def test_frames_carry_the_steps_gradient_norm_update_norm_and_update_ratios(setup):
    """The attach window's |grad|, |update| and ratio rows: measured at the frames' steps (the
    parameters copied before a frame's step), equal to the norms computed around that step in
    float64 to float32's precision; a step from a pause carries its update too."""
    model, opt, w = setup
    with Listener(w.address) as lst, MeasuringTrainer(model, opt, w) as tr:
        _until(lambda: (f := lst.latest()) is not None and np.isfinite(f.history.update_norm).sum() >= 3,
               what="frames with updates")
        lst.pause()
        held = _until(lambda: lst.status()["held_at"], what="the hold")
        lst.step(1)
        f = _until(lambda: (f := lst.latest()) is not None and f.step == held + 1 and not f.running and f,
                   what="the frame of the step from the pause")
        h = f.history
        assert h.bucket == 1
        measured = [i for i, u in enumerate(h.update_norm) if np.isfinite(u)]
        assert len(measured) >= 3 and int(h.step[measured[-1]]) == held + 1
        tr.norms[held + 1] = tr.measure()  # the trainer is held inside that step
        for i in measured:
            grad, upd, ratios = tr.norms[int(h.step[i])]
            assert h.grad_norm[i] == pytest.approx(grad, rel=1e-5)
            assert h.update_norm[i] == pytest.approx(upd, rel=1e-5)
            assert [r[i] for r in h.update_ratio] == pytest.approx(list(ratios), rel=1e-5)
        assert np.isfinite(h.grad_norm).sum() >= len(measured)
        # optimlab listen prints them (the paused frame's curves reach its step)
        from core.listen import frame_line, frame_summary
        grad, upd, ratios = tr.norms[held + 1]
        line = frame_line(f)
        assert f"|grad| {h.grad_norm[-1]:.4g}  |update| {h.update_norm[-1]:.4g}  Adam" in line
        js = frame_summary(f)
        assert js["grad_norm"] == pytest.approx(grad, rel=1e-5) and js["update_norm"] == pytest.approx(upd, rel=1e-5)
        assert js["update_ratio"] == pytest.approx(list(ratios), rel=1e-5)


def test_pause_step_and_resume_hold_the_script_at_exact_steps(setup):
    model, opt, w = setup
    with Listener(w.address) as lst, Trainer(model, opt, w):
        _until(lambda: lst.latest() is not None, what="a first frame")
        lst.pause()
        held = _until(lambda: lst.status()["held_at"], what="the hold")
        time.sleep(0.2)  # a script that was not held would have stepped on
        assert w.step == held
        lst.step(3)
        _until(lambda: lst.status()["held_at"] == held + 3, what="three steps")
        assert w.step == held + 3
        lst.resume()
        _until(lambda: w.step > held + 20, what="the run going on")


def test_a_listener_that_leaves_while_paused_releases_the_script(setup):
    model, opt, w = setup
    with Trainer(model, opt, w):
        lst = Listener(w.address)
        _until(lambda: lst.latest() is not None, what="a first frame")
        lst.pause()
        held = _until(lambda: lst.status()["held_at"], what="the hold")
        lst.close()  # the app closed (or crashed): its subscription ends
        _until(lambda: w.step > held + 10, what="the script going on")


def test_nothing_is_copied_while_no_one_listens(setup, monkeypatch):
    model, opt, w = setup
    captures = []
    real = w._capture
    monkeypatch.setattr(w, "_capture", lambda paused: captures.append(1) or real(paused))
    tr = Trainer(model, opt, w)
    for _ in range(300):
        tr.one()
    assert captures == [] and w.publisher.frames_sent == 0
    with Listener(w.address) as lst:
        _until(lambda: w.publisher.listening, what="the subscription")
        for _ in range(50):
            tr.one()
            time.sleep(0.002)
        _until(lambda: lst.latest() is not None, what="a frame")
    assert captures


def test_a_big_bfloat16_parameter_travels_as_a_preview_with_its_dtype():
    p = torch.nn.Parameter(torch.randn(600, 300).to(torch.bfloat16))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    with Watch(opt, name="bf16", max_hz=1000) as w, Listener(w.address) as lst:
        _until(lambda: w.publisher.listening, what="the subscription")
        lst.pause()
        p.grad = torch.ones_like(p)
        t = threading.Thread(target=opt.step)
        t.start()
        f = _until(lambda: (f := lst.latest()) is not None and f, what="a frame")
        v = f.tensors[0].value
        assert (v.shape, v.dtype, v.exact) == ((600, 300), "bfloat16", False)
        assert v.values.shape == (200, 150) and v.stride == (3, 2) and v.stats_exact
        assert np.array_equal(v.values, p.detach()[::3, ::2].float().numpy())
        assert v.norm == pytest.approx(float(torch.linalg.vector_norm(p.detach().double())), rel=1e-5)
        lst.resume()
        t.join(10)


def test_watch_refuses_what_is_not_an_optimizer_and_bad_settings():
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        Watch(object())
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(ValueError, match="Invalid max_hz"):
        Watch(opt, max_hz=0)
    with pytest.raises(ValueError, match="Invalid rank"):
        Watch(opt, rank=1)


def test_closing_removes_the_hook_and_the_sockets(setup):
    model, opt, w = setup
    base = w.publisher.endpoint
    assert base.info.exists()
    w.close()
    assert not base.info.exists()
    Trainer(model, opt, w).one()
    assert w.step == 0


def test_watch_without_an_optimizer_follows_the_first_one_to_step_from_its_first_step():
    from core.watch import WatchFirst
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    w = WatchFirst(model=model, name="anon", max_hz=200)
    opt = torch.optim.Adam(model.parameters())  # made after watch(): no reference was passed
    other = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    try:
        assert w.address is None
        tr = Trainer(model, opt, w)
        tr.one()
        other.step()  # a second optimizer is not the one watched
        assert w.watch.optimizer is opt and w.step == 1
        with Listener(w.address) as lst, tr:
            _until(lambda: lst.latest() is not None, what="a first frame")
            lst.pause()
            held = _until(lambda: lst.status()["held_at"], what="the hold")
            f = _until(lambda: (f := lst.latest()) is not None and f.step == held and f, what="frame")
            assert [t.name for t in f.tensors] == ["0.weight", "0.bias", "2.weight", "2.bias"]
            assert f.optimizer == "Adam"
            # the first step's loss, reported before any optimizer existed for the hook, is on the curve
            assert np.array_equal(f.history.loss, np.array([float(x) for x in tr.losses[:held]]))
    finally:
        w.close()
    tr.one()
    assert w.step == held  # closed: no more steps counted


def _watched_steps(model, opt, w, x, n):
    for _ in range(n):
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        w.report(loss=loss)
        opt.step()


def test_the_hook_reads_no_tensor_value_while_it_captures_frames_and_reports_losses(setup):
    """On a GPU each read of a value in the hook (.item(), float(), .cpu(), .tolist()) waits for
    the device; on the CPU they cost nothing, so they are counted (tests/core/sync_counter.py):
    the hook only hands over copies, the publisher thread reads them."""
    from tests.core.sync_counter import SyncCounter
    model, opt, w = setup
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    w.publisher.listening = True  # as when a listener subscribed: every step may capture
    w._interval = 0.0
    w._budget.fraction = 1.0
    _watched_steps(model, opt, w, x, 2)  # Adam's state exists from here on
    with SyncCounter() as syncs:
        _watched_steps(model, opt, w, x, 600)  # past LOSS_FLUSH: a batch of losses is stacked too
    assert syncs.count == 0, syncs.report()
    assert w.publisher.frames_sent + w.publisher.frames_dropped > 0 or w.publisher._slot is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no GPU")
def test_a_watched_cuda_step_makes_no_host_sync():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).cuda()
    opt = torch.optim.Adam(model.parameters())
    x = torch.randn(16, 3, device="cuda")
    with Watch(opt, model=model, name="cuda-unit", max_hz=1000) as w:
        w.publisher.listening = True
        w._interval, w._budget.fraction = 0.0, 1.0
        _watched_steps(model, opt, w, x, 2)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            _watched_steps(model, opt, w, x, 600)
        finally:
            torch.cuda.set_sync_debug_mode(0)


def test_a_parameter_copy_that_fails_for_memory_does_not_fail_the_scripts_step(setup, monkeypatch):
    """The copy of the parameters for a frame's update is the listener's, not the script's: if it
    fails (out of memory on a full GPU), the step goes on and frames carry the gradient norm only."""
    model, opt, w = setup
    failed = []

    class Full:  # a parameter whose copy finds the device full
        def numel(self):
            return 1

        def detach(self):
            return self

        def clone(self):
            failed.append(1)
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
    monkeypatch.setattr(w, "_dense_params", lambda: [Full()])
    with Listener(w.address) as lst, Trainer(model, opt, w):
        f = _until(lambda: (f := lst.latest()) is not None and np.isfinite(f.history.grad_norm).sum() >= 2 and f,
                   what="frames with gradient norms")
        assert failed and w._no_update and not np.isfinite(f.history.update_norm).any()
