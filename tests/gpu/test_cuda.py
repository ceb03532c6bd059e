"""CUDA: device moves, fidelity against plain CUDA scripts, low precision, fused/foreach/capturable,
snapshots, a task with a scheduler, saves across devices, and no host sync in the step.

Skipped where torch sees no GPU. ``OPTIMLAB_TEST_DEVICE=cpu`` runs them on the CPU instead (a
move is then a no-op): that checks the tests themselves where no GPU is at hand, nothing
about CUDA. ``benchmarks/gpu_check.sh`` runs them on a GPU machine.
"""
import os

import pytest
import torch

from core import catalogue, devices, distributions, files, session_file
from core.observe import make_snapshot
from core.session import Session
from core.spec import GradientSpec, ManualGrad, SchedulerSpec, SessionSpec, SetDevice, SpecError, Step, TensorSpec
from core.task_spec import TaskSpec
from core.tasks import task_seeds
from tests.core.sync_counter import SyncCounter
from tests.core.test_devices import every_tensor
from tests.core.test_tasks import plain_data, plain_loss, plain_model
from tests.gpu.plain import ALL, Plain, assert_same, kinds_for, make_spec, same_bits

DEV = os.environ.get("OPTIMLAB_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "")
pytestmark = pytest.mark.skipif(not DEV, reason="torch sees no GPU (set OPTIMLAB_TEST_DEVICE=cpu to dry-run)")
ON = devices.canonical(DEV) if DEV else ""  # cuda -> cuda:0
ON_GPU = ON.startswith("cuda")
CAPTURABLE = [n for n in ALL if catalogue.info(n).hparam("capturable") is not None]
FUSED = [n for n in ALL if catalogue.info(n).hparam("fused") is not None]


def quiet(s: Session) -> Session:
    s.set_breakpoints([])  # fidelity, not breakpoints: float16 runs may overflow as the script's do
    return s


# ----- fidelity against plain CUDA scripts -----

@pytest.mark.parametrize("name", ALL)
def test_every_optimizer_on_the_gpu_equals_a_plain_script_there(name):
    for kind in kinds_for(name):
        s = quiet(Session(make_spec(name, kind, device=DEV)))
        plain = Plain(name, kind, device=DEV)
        for _ in range(5):
            plain.step()
        s.apply(Step(5))
        assert s.params["t0"].device.type == torch.device(DEV).type
        assert_same(s, plain.opt, f"{name}/{kind} on {DEV}")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", ALL)
def test_low_precision_on_the_gpu_equals_a_plain_script_there(name, dtype):
    for kind in kinds_for(name):
        s = quiet(Session(make_spec(name, kind, device=DEV, dtype=dtype)))
        plain = Plain(name, kind, device=DEV, dtype=dtype)
        for _ in range(4):
            plain.step()
        s.apply(Step(4))
        assert_same(s, plain.opt, f"{name}/{kind}/{dtype} on {DEV}")


def _flag_cases():
    out = [(n, {"fused": True}) for n in FUSED] + [(n, {"foreach": True}) for n in ALL
                                                   if catalogue.info(n).hparam("foreach") is not None]
    if ON_GPU:
        out += [(n, {"capturable": True}) for n in CAPTURABLE]
    return out


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name, flags", _flag_cases())
def test_fused_foreach_and_capturable_equal_a_plain_script_with_the_same_flags(name, flags, dtype):
    s = quiet(Session(make_spec(name, "manual", device=DEV, dtype=dtype, hparams=flags)))
    plain = Plain(name, "manual", device=DEV, dtype=dtype, hparams=flags)
    for _ in range(5):
        plain.step()
    s.apply(Step(5))
    assert_same(s, plain.opt, f"{name} {flags} {dtype}")


@pytest.mark.skipif(not ON_GPU, reason="capturable needs a GPU")
def test_a_capturable_session_cannot_move_to_the_cpu_and_nothing_moves():
    s = Session(make_spec("Adam", "manual", device=DEV, hparams={"capturable": True}))
    s.step(2)
    with pytest.raises(SpecError, match="capturable=True on cpu") as e:
        s.apply(SetDevice("cpu"))
    assert "\n" not in str(e.value)
    assert all(t.device.type == "cuda" for _, t in every_tensor(s.engine))


# ----- moves -----

@pytest.mark.parametrize("name", ["SGD", "Adam", "ASGD", "LBFGS", "Adafactor"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_moving_there_and_back_equals_a_script_that_moves_and_rewinds_across_moves(name, dtype):
    kind = "manual" if name != "LBFGS" else "objective"
    s = quiet(Session(make_spec(name, kind, dtype=dtype, hparams={"momentum": 0.9} if name == "SGD" else None)))
    plain = Plain(name, kind, dtype=dtype, hparams={"momentum": 0.9} if name == "SGD" else None)
    marks = {}
    for device in (DEV, "cpu", DEV):
        s.apply(Step(3))
        for _ in range(3):
            plain.step()
        marks[s.step_count] = {n: p.detach().cpu().clone() for n, p in s.params.items()}
        s.apply(SetDevice(device))
        plain.move(device)
        assert all(t.device.type == torch.device(device).type for _, t in every_tensor(s.engine))
    s.apply(Step(3))
    for _ in range(3):
        plain.step()
    assert_same(s, plain.opt, f"{name} {dtype} moved")
    end = {n: p.detach().cpu().clone() for n, p in s.params.items()}
    for step, values in marks.items():  # rewinding crosses the moves: checkpoints + replay
        s.goto(step)
        assert all(same_bits(values[n], p.detach().cpu()) for n, p in s.params.items()), step
    s.goto()
    assert all(same_bits(end[n], p.detach().cpu()) for n, p in s.params.items())


def test_a_task_session_moves_model_data_order_and_scheduler_along():
    task = TaskSpec(kind="digits_mlp", batch_size=64, eval_every=1000, seed=2)
    s = Session(SessionSpec(optimizer="SGD", hparams={"lr": 0.05, "momentum": 0.9}, zero_grad_each_step=True,
                            gradient=GradientSpec("task", task=task), scheduler=SchedulerSpec("StepLR", {"step_size": 1})))
    s.step(5)
    s.apply(SetDevice(DEV))
    off = [what for what, t in every_tensor(s.engine) if t.device.type != torch.device(DEV).type]
    assert not off, off
    s.step(30)  # crosses an epoch: a new order, copied once
    assert s.engine.task._order_here.device.type == torch.device(DEV).type


# ----- a task with a scheduler, deterministic -----

@pytest.mark.parametrize("kind", ["digits_mlp", "digits_cnn"])
def test_a_task_with_a_scheduler_on_the_gpu_equals_a_plain_script_there(kind):
    spec = TaskSpec(kind=kind, batch_size=32, eval_every=1000, seed=4)
    s = Session(SessionSpec(optimizer="AdamW", hparams={"lr": 3e-3}, zero_grad_each_step=True, device=DEV,
                            deterministic=True, gradient=GradientSpec("task", task=spec),
                            scheduler=SchedulerSpec("StepLR", {"step_size": 1, "gamma": 0.5}, every="epoch")))
    steps = 2 * s.task.steps_per_epoch + 3
    s.step(steps)
    # the plain script: data and model made on the CPU as the tasks recipe says, then moved
    with devices.deterministic():
        train_x, train_y, _, _ = plain_data(spec)
        train_x, train_y = train_x.to(DEV), train_y.to(DEV)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(task_seeds(spec.seed).init)
            model = plain_model(spec)
        model.to(DEV)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        g = torch.Generator().manual_seed(task_seeds(spec.seed).order)
        n, bs, done = len(train_x), spec.batch_size, 0
        while done < steps:
            order = torch.randperm(n, generator=g).to(DEV)
            for i in range(0, n, bs):
                if done == steps:
                    break
                idx = order[i:i + bs]
                opt.zero_grad()
                plain_loss(spec, model(train_x[idx]), train_y[idx]).backward()
                opt.step()
                done += 1
            else:
                sched.step()
    for (na, a), (nb, b) in zip(s.task.model.named_parameters(), model.named_parameters()):
        assert na == nb and same_bits(a, b), na
    assert s.optimizer.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


# ----- snapshots and syncs -----

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_distributions_counted_on_the_gpu_equal_the_cpus(dtype):
    g = torch.Generator().manual_seed(0)
    t = (torch.randn(3000, 700, generator=g) * torch.logspace(-14, 8, 700)).to(dtype)  # past both ends
    t[0, :3] = torch.tensor([float("nan"), float("inf"), 0.0])
    assert torch.equal(distributions.counts(t.to(DEV)).cpu(), distributions.counts(t))

def test_a_snapshot_copies_once_per_device():
    s = Session(make_spec("Adam", "manual", device=DEV))
    s.step(3)
    s.flush()
    with SyncCounter() as syncs:
        snap = make_snapshot(s, 1, running=True)
    # the parameters, gradients and moments on the GPU; Adam's step counters on the CPU (torch's rule)
    assert syncs.count <= (2 if ON_GPU else 1), syncs.report()
    for t in snap.tensors:
        p = s.params[t.name]
        assert torch.equal(torch.from_numpy(t.value.values.copy()), p.detach().cpu())


@pytest.mark.skipif(not ON_GPU, reason="sync debug mode is CUDA's")
@pytest.mark.parametrize("which", ["manual", "objective", "task"])
def test_a_step_makes_no_host_sync_on_the_gpu(which):
    if which == "task":
        spec = SessionSpec(optimizer="Adam", zero_grad_each_step=True, device=DEV, gradient=GradientSpec(
            "task", task=TaskSpec(kind="digits_mlp", batch_size=16, eval_every=10_000, seed=0)))
    else:
        spec = make_spec("Adam", which, device=DEV)
    s = Session(spec)
    s.step(2)  # the first epoch's order is copied to the GPU at its first batch
    s.observer.force_next = True
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            s.engine.step_once()  # observer hooks included (measuring the first one)
    finally:
        torch.cuda.set_sync_debug_mode(0)


# ----- saving across devices -----

def test_saved_on_the_gpu_reopened_moved_to_the_cpu_saved_and_back(tmp_path):
    name = "Adam"
    s = quiet(Session(make_spec(name, "manual", device=DEV)))
    plain = Plain(name, "manual", device=DEV)
    s.step(3)
    for _ in range(3):
        plain.step()
    session_file.save_session(s, tmp_path / "gpu.optimlab")
    files.save_optimizer(s, tmp_path / "opt.pt")
    r = quiet(session_file.load_session(tmp_path / "gpu.optimlab"))
    assert r.device == ON
    r.apply(SetDevice("cpu"))
    plain.move("cpu")
    r.step(2)
    for _ in range(2):
        plain.step()
    session_file.save_session(r, tmp_path / "cpu.optimlab")
    q = quiet(session_file.load_session(tmp_path / "cpu.optimlab"))
    assert q.device == "cpu"
    q.apply(SetDevice(DEV))
    plain.move(DEV)
    q.step(2)
    for _ in range(2):
        plain.step()
    assert_same(q, plain.opt, "saved and moved")
    cpu = quiet(Session(make_spec(name, "manual")))  # a state_dict saved on the GPU loads on the CPU
    cpu.load_optimizer_state(torch.load(tmp_path / "opt.pt", weights_only=True, map_location="cpu"))
    assert cpu.optimizer.state[cpu.params["t0"]]["exp_avg"].device.type == "cpu"


@pytest.mark.skipif(not ON_GPU, reason="needs a GPU")
def test_cuda_names_the_current_device_and_an_absent_index_is_refused():
    assert Session(make_spec("SGD", "manual", device="cuda")).device == f"cuda:{torch.cuda.current_device()}"
    with pytest.raises(SpecError, match="not available"):
        Session(make_spec("SGD", "manual", device=f"cuda:{torch.cuda.device_count()}"))


def test_measuring_the_skipped_steps_on_the_gpu_equals_measuring_every_step_live():
    """core.remeasure on the device: the histograms (counted there) and norms of the steps a run
    skipped, from a replay, equal measuring every step live; the generators stay as they were."""
    from core.remeasure import measure_skipped
    from tests.core.test_remeasure import assert_same_measurements
    spec = make_spec("Adam", "objective", device=DEV)
    budgeted, live = quiet(Session(spec)), quiet(Session(spec))
    live.observer.every_step = True
    budgeted.run(400)
    live.run(400)
    rng = torch.cuda.get_rng_state() if ON_GPU else torch.random.get_rng_state()
    assert measure_skipped(budgeted).done
    assert_same_measurements(budgeted, live, exact_sums=False)
    assert torch.equal(rng, torch.cuda.get_rng_state() if ON_GPU else torch.random.get_rng_state())
