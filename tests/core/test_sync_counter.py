"""The host-sync counter sees every read of tensor values into Python or host memory,
says which line made it, and nothing else."""
import math

import numpy as np
import pytest
import torch

from core import objectives
from core.session import Session

from .sync_counter import SyncCounter
from .test_runner import rosen_spec

READS = {
    "item()": lambda t, s: s.item(),
    "float()": lambda t, s: float(s),
    "math.isfinite": lambda t, s: math.isfinite(s),
    "int()": lambda t, s: int(s),
    "bool()": lambda t, s: bool(s > 0),
    "if": lambda t, s: 1 if s else 0,
    "index()": lambda t, s: [0, 1, 2, 3][torch.tensor(1)],
    "complex()": lambda t, s: complex(s),
    "tolist()": lambda t, s: t.tolist(),
    "numpy()": lambda t, s: t.numpy(),
    "np.asarray": lambda t, s: np.asarray(t),
    "cpu()": lambda t, s: t.cpu(),
    "to('cpu')": lambda t, s: t.to("cpu"),
    "to(device=cpu)": lambda t, s: t.to(device=torch.device("cpu"), dtype=torch.float64),
    "to(cpu tensor)": lambda t, s: t.to(s),
    "to non_blocking": lambda t, s: t.to("cpu", non_blocking=True),
    "f-string": lambda t, s: f"{s:.3f}",
    "repr": lambda t, s: repr(t),
    "in": lambda t, s: 2.0 in t,
    "torch.equal": lambda t, s: torch.equal(t, t),
    "allclose": lambda t, s: t.allclose(t),
    "nonzero": lambda t, s: torch.nonzero(t),
    "unique": lambda t, s: torch.unique(t),
    "masked_select": lambda t, s: t.masked_select(t > 1),
    "mask index": lambda t, s: t[t > 1],
}

ON_DEVICE = {
    "arithmetic": lambda t, s: (t * 2 + s).sum().sqrt(),
    "reductions and checks": lambda t, s: (torch.isfinite(t).all(), t.abs().max(), torch.linalg.vector_norm(t)),
    "to(dtype)": lambda t, s: t.to(torch.float64),
    "clone, detach, stack": lambda t, s: torch.stack([t.detach().clone(), t]),
    "int and slice index": lambda t, s: (t[0], t[1:], t[torch.tensor([0, 1])]),
    "where": lambda t, s: torch.where(t > 1, t, s),
    "shape": lambda t, s: (len(t), t.shape[0], t.numel()),
    "backward": lambda t, s: (t.detach().requires_grad_(True) ** 2).sum().backward(),
}


def tensors():
    return torch.tensor([1.5, 2.0, -0.5]), torch.tensor(3.0)


@pytest.mark.parametrize("name", READS)
def test_each_read_of_tensor_values_counts_once_at_the_line_that_made_it(name):
    t, s = tensors()
    with SyncCounter() as syncs:
        READS[name](t, s)
    assert syncs.count == 1, syncs.report()
    assert syncs.syncs[0].where.startswith("tests/core/test_sync_counter.py:")


@pytest.mark.parametrize("name", ON_DEVICE)
def test_work_that_stays_on_the_device_counts_nothing(name):
    t, s = tensors()
    with SyncCounter() as syncs:
        ON_DEVICE[name](t, s)
    assert syncs.count == 0, syncs.report()


def test_torchs_own_reads_of_its_cpu_step_counter_count_only_when_asked():
    xy = torch.tensor([-1.5, 2.0], requires_grad=True)
    opt = torch.optim.Adam([xy], lr=0.01)
    objectives.rosenbrock([xy]).backward()
    with SyncCounter() as mine, SyncCounter(include_torch=True) as everyone:
        opt.step()
    assert mine.count == 0
    assert everyone.count >= 1 and all(s.where.startswith("torch/") for s in everyone.syncs)


def test_counts_only_inside_the_block_and_only_on_its_thread():
    t, s = tensors()
    with SyncCounter() as syncs:
        float(s)
    float(s)
    assert syncs.count == 1
    import threading
    with SyncCounter() as syncs:
        th = threading.Thread(target=lambda: float(s))
        th.start()
        th.join()
    assert syncs.count == 0


def test_a_copy_to_the_host_then_read_there_counts_once():
    t, s = tensors()
    with SyncCounter() as syncs:
        host = t.detach().cpu()
        host.numpy(), host.tolist(), float(host[0])
        t.to("cpu").tolist()
    assert [x.op for x in syncs.syncs] == ["cpu()", "to(cpu)"]


def test_the_report_names_each_place_with_its_count():
    t, s = tensors()
    with SyncCounter() as syncs:
        for _ in range(3):
            float(s)
        t.tolist()
    text = syncs.report()
    assert "     3  float()" in text and "     1  tolist()" in text


# ----- the step loop (the engine rewrite removes its per-step syncs) -----

def digits_spec():
    from core.spec import GradientSpec, SessionSpec
    from core.task_spec import TaskSpec
    return SessionSpec(optimizer="Adam", zero_grad_each_step=True, gradient=GradientSpec(
        "task", task=TaskSpec(kind="digits_mlp", batch_size=32, eval_every=1_000_000, seed=0)))


def step_without_probing(session) -> None:
    """The loop's per-step path: the engine's step in the documented order."""
    session.engine.step_once()


@pytest.mark.parametrize("spec", [rosen_spec, digits_spec], ids=["adam-rosenbrock", "adam-digits-task"])
def test_a_step_without_probing_makes_no_host_sync(spec):
    session = Session(spec())
    session.step(1)  # the first step checks what it can once
    session.observer.recording = False  # no measurement (early in a run the floor measures every step;
    # what a measured step reads is the next test's)
    with SyncCounter() as syncs:
        for _ in range(5):
            step_without_probing(session)
    assert syncs.count == 0, syncs.report()


@pytest.mark.parametrize("spec", [rosen_spec, digits_spec], ids=["adam-rosenbrock", "adam-digits-task"])
def test_a_watched_step_reads_values_only_when_its_batch_is_read(spec):
    """As on a GPU (measurements read back every GPU_CHECK_EVERY steps), with every step
    measured (a breakpoint needs the gradient norm) and the landscape's point recorded: the
    steps between two reads of the batch read nothing, whatever they measured."""
    from core.breakpoints import parse
    from core.observer import GPU_CHECK_EVERY
    session = Session(spec())
    session.step(1)
    session.set_breakpoints([parse("grad_norm > 1e30"), parse("loss nonfinite")])
    session.observer.check_every = GPU_CHECK_EVERY
    reading_steps, quiet_steps = 0, 0
    for _ in range(2 * GPU_CHECK_EVERY + 5):
        with SyncCounter() as syncs:
            assert session.advance() is None
        if session.observer.pending():  # the batch was not read: the step must not have read
            at_epoch_start = session.task is not None and session.task.batch_in_epoch == 1
            places = {op for op, _ in syncs.by_place()}
            assert syncs.count == 0 or (at_epoch_start and places == {"to(cpu)"}), syncs.report()
            quiet_steps += 1
        else:
            reading_steps += 1
    assert quiet_steps > reading_steps > 0
    session.flush()  # what was measured reaches the curves (and the landscape's path)
    h = session.history.view()
    measured = h.step[h.step > 1]
    assert len(measured) == 2 * GPU_CHECK_EVERY + 5 and np.isfinite(h.grad_norm[h.step > 1]).all()
    if spec is rosen_spec:
        path = session.history.path_array()
        assert path is not None and len(path) >= len(measured)
        assert tuple(path[-1]) == tuple(session.params["xy"].tolist())
