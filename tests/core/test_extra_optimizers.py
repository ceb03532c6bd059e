"""Optimizers beyond torch.optim: found in the installed collections and in a user's own
file, run as a plain script runs them (bit for bit), special needs met or said."""
import io
import math
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core import catalogue, cli, extra_optimizers, files, objectives, optimizer_names, trust
from core.session import Session, tensor_seed
from core.engine import optimizer_seed
from core.engine import StepError
from core.spec import (AddGroup, GradientSpec, GroupSpec, LoadOptimizer, SessionSpec, SetHparam, SpecError, Step, TensorSpec,
                       dumps, loads)
from core.task_spec import TaskSpec
from core.tasks import build_model, make_task_data, task_seeds

from .optimizer_files import NUMPY_NOISE

for _module in ("pytorch_optimizer", "lion_pytorch", "schedulefree", "prodigyopt"):
    pytest.importorskip(_module)  # pyproject's [extras]; .ci/run installs them

# a sample: ten of pytorch_optimizer's (plain, second-order, train/eval, preconditioned,
# random-drawing), plus each of the other collections
SAMPLE = ["pytorch_optimizer.Lion", "pytorch_optimizer.SOAP", "pytorch_optimizer.SophiaH",
          "pytorch_optimizer.AdaHessian", "pytorch_optimizer.Adan", "pytorch_optimizer.Lamb",
          "pytorch_optimizer.MADGRAD", "pytorch_optimizer.DAdaptAdam", "pytorch_optimizer.Shampoo",
          "pytorch_optimizer.ScheduleFreeAdamW", "pytorch_optimizer.Kron", "pytorch_optimizer.Prodigy",
          "lion_pytorch.Lion", "schedulefree.AdamWScheduleFree", "schedulefree.SGDScheduleFreeClosure",
          "prodigyopt.Prodigy"]
# prodigyopt's step refuses groups with different lrs: its added group gets the same one
ONE_LR = {"prodigyopt.Prodigy"}
SEED = 7
SHAPES = [(3, 4), (5,)]


@pytest.fixture(autouse=True)
def no_agreements():
    trust.forget()
    yield
    trust.forget()


def same(a, b) -> bool:
    """Equal as torch.equal for tensors, recursively for containers, NaN equal to NaN."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def assert_same_run(live_params, opt_a, plain_params, opt_b, what):
    assert len(live_params) == len(plain_params)
    for a, b in zip(live_params, plain_params):
        assert torch.equal(a, b), f"{what}: parameters differ"
    sd_a, sd_b = opt_a.state_dict(), opt_b.state_dict()
    assert same(sd_a["param_groups"], sd_b["param_groups"]), f"{what}: param_groups differ"
    assert same(sd_a["state"], sd_b["state"]), f"{what}: state differs"


def plain_tensors(shapes, start=0):
    out = []
    for i, shape in enumerate(shapes):
        g = torch.Generator().manual_seed(tensor_seed(SEED, start + i))
        t = torch.empty(shape)
        torch.nn.init.normal_(t, 0.0, 1.0, generator=g)
        out.append(t.requires_grad_(True))
    return out


def objective_spec(name, shapes=SHAPES, **kw):
    return SessionSpec(optimizer=name, tensors=[TensorSpec(f"t{i}", s) for i, s in enumerate(shapes)],
                       gradient=GradientSpec("objective", objective="quadratic", condition=10.0), seed=SEED,
                       set_to_none=True, zero_grad_each_step=True, **kw)


def plain_step(opt, params, need):
    """README "The step", written out for a class with these needs."""
    if "train_eval" in need:
        opt.train()

    def loss_fn():  # the objective's tensors are the spec's own: a group added later gets no gradient
        return objectives.quadratic(params[:len(SHAPES)], 10.0)
    if "closure" in need:
        def closure():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn()
            loss.backward(create_graph="second_order" in need)
            return loss
        opt.step(closure)
        return
    opt.zero_grad(set_to_none=True)
    loss_fn().backward(create_graph="second_order" in need)
    opt.step()


# ----- the catalogue finds them -----

def test_catalogue_finds_the_installed_collections_classes():
    found = {f.name: f for f in extra_optimizers.listing()}
    usable = [n for n, f in found.items() if f.reason is None]
    for name in SAMPLE:
        assert name in usable
    assert sum(n.startswith("pytorch_optimizer.") for n in usable) > 100, "pytorch_optimizer's collection"
    assert {f.collection for f in found.values()} == {"pytorch_optimizer", "lion_pytorch", "schedulefree",
                                                       "prodigyopt"}
    # torch's own classes that pytorch_optimizer re-exports keep their plain names only
    assert "pytorch_optimizer.Adam" not in found and "pytorch_optimizer.SGD" not in found
    assert catalogue.optimizer_class("pytorch_optimizer.Lion").__module__.startswith("pytorch_optimizer")


def test_skipped_classes_are_listed_with_one_sentence_reasons():
    found = {f.name: f.reason for f in extra_optimizers.listing()}
    assert "wraps another optimizer" in found["pytorch_optimizer.Lookahead"]
    assert "wraps another optimizer" in found["pytorch_optimizer.SAM"]
    assert "takes the model itself" in found["pytorch_optimizer.AdamMini"]
    assert "num_iterations, which has no default" in found["pytorch_optimizer.Ranger21"]
    assert "use_muon" in found["pytorch_optimizer.Muon"]
    # a state_dict with a Python object in it could be saved only as a pickle no safe loader reads
    assert "keeps a Python object (deque, state entry 'grad_queue')" in found["pytorch_optimizer.AdaShift"]
    assert "weights_only=True" in found["pytorch_optimizer.SCION"]
    for name, reason in found.items():
        if reason is not None:
            assert "\n" not in reason and len(reason) < 240, name
    with pytest.raises(SpecError, match=r"pytorch_optimizer.Lookahead cannot be used here: it wraps"):
        Session(objective_spec("pytorch_optimizer.Lookahead"))


def test_known_needs_and_skips_agree_with_the_probe():
    """The tables written for the pinned versions say what trying the class finds."""
    for name in ("pytorch_optimizer.SophiaH", "pytorch_optimizer.AdaHessian", "pytorch_optimizer.Lion",
                 "schedulefree.AdamWScheduleFreeClosure", "schedulefree.AdamWScheduleFree", "prodigyopt.Prodigy",
                 "pytorch_optimizer.SOAP", "pytorch_optimizer.Muon", "pytorch_optimizer.AliG",
                 "pytorch_optimizer.AdaShift", "pytorch_optimizer.SCION"):
        cls = extra_optimizers.resolve(name)
        need, reason = extra_optimizers.probe(cls)
        assert (reason is not None) == (name in extra_optimizers.KNOWN_SKIPS), name
        if reason is None:
            assert need == catalogue.needs(name), name


def test_probe_leaves_torchs_random_generator_alone():
    before = torch.random.get_rng_state()
    extra_optimizers.probe.cache_clear()
    extra_optimizers.probe(extra_optimizers.resolve("pytorch_optimizer.SophiaH"))  # draws Hutchinson probes
    assert torch.equal(torch.random.get_rng_state(), before)


# ----- fidelity -----

@pytest.mark.parametrize("name", SAMPLE)
def test_session_equals_plain_script_with_the_same_class(name):
    need = catalogue.needs(name)
    lr = catalogue.info(name).hparam("lr").default
    added_lr = lr * (0.5 if name in ONE_LR else 0.25)
    s = Session(objective_spec(name))
    s.apply(Step(3))
    s.apply(SetHparam(0, "lr", lr * 0.5))
    s.apply(AddGroup((TensorSpec("extra", (2, 2)),), {"lr": added_lr}))
    s.apply(Step(3))

    cls = catalogue.optimizer_class(name)
    params = plain_tensors(SHAPES)
    opt = cls(params)
    if "train_eval" in need:
        opt.train()
    torch.manual_seed(optimizer_seed(SEED))
    np.random.seed(optimizer_seed(SEED) % 2 ** 32)
    for _ in range(3):
        plain_step(opt, params, need)
    opt.param_groups[0]["lr"] = lr * 0.5
    extra = plain_tensors([(2, 2)], start=len(SHAPES))[0]
    opt.add_param_group({"params": [extra], "lr": added_lr})
    params.append(extra)
    for _ in range(3):
        plain_step(opt, params, need)
    assert_same_run(s.param_list, s.optimizer, params, opt, name)


def test_prodigy_refuses_groups_with_different_lrs_when_they_are_made_not_at_the_next_step():
    """prodigyopt raises inside step() for a group whose lr is not the largest (nor 0): a form or an
    added group making one is refused in one sentence and the session stays as it was; lrs edited one
    group at a time may differ in between, and a step then is refused before anything moves."""
    name = "prodigyopt.Prodigy"
    s = Session(objective_spec(name))
    s.apply(Step(2))
    s.apply(AddGroup((TensorSpec("same", (2, 2)),), {"lr": 1.0}))
    entries = len(s.journal)
    with pytest.raises(SpecError, match="Prodigy needs the same lr in every parameter group: group 2 has 0.25"):
        s.apply(AddGroup((TensorSpec("extra", (2, 2)),), {"lr": 0.25}))
    assert [g["lr"] for g in s.optimizer.param_groups] == [1.0, 1.0] and len(s.journal) == entries
    s.apply(SetHparam(1, "lr", 0.5))
    before = [p.clone() for p in s.param_list]
    with pytest.raises(StepError, match="group 0 has 1, another 0.5|group 1 has 0.5, another 1"):
        s.apply(Step(1))
    assert s.step_count == 2 and all(torch.equal(a, b) for a, b in zip(before, s.param_list))
    s.apply(SetHparam(0, "lr", 0.5))  # every group's lr changed, one at a time: it steps again
    s.apply(Step(1))
    assert s.step_count == 3
    with pytest.raises(SpecError, match="group 1 has 0.5, another 1"):
        Session(objective_spec(name, groups=(GroupSpec(("t0",)), GroupSpec(("t1",), {"lr": 0.5}))))


def test_schedule_free_switch_is_called_in_the_documented_order(monkeypatch):
    """train() before every step's gradient; eval() then train() just around an evaluation."""
    calls = []
    cls = catalogue.optimizer_class("schedulefree.AdamWScheduleFree")
    cls([torch.zeros(1, requires_grad=True)])  # torch wraps the class's step with its hooks once, now
    for method in ("train", "eval", "step"):
        real = getattr(cls, method)
        spy = lambda self, *a, _real=real, _m=method, **k: (calls.append(_m), _real(self, *a, **k))[1]  # noqa: E731
        spy.hooked = True  # already inside torch's hook wrapper: not wrapped (and hooked) twice
        monkeypatch.setattr(cls, method, spy)
    from core import tasks
    real_eval = tasks.Task.evaluate
    monkeypatch.setattr(tasks.Task, "evaluate", lambda self: (calls.append("evaluate"), real_eval(self))[1])
    real_loss = tasks.Task.loss
    monkeypatch.setattr(tasks.Task, "loss", lambda self, b: (calls.append("loss"), real_loss(self, b))[1])
    ts = TaskSpec(kind="mlp", n_samples=60, batch_size=16, eval_every=2, seed=3)
    s = Session(SessionSpec(optimizer="schedulefree.AdamWScheduleFree", gradient=GradientSpec("task", task=ts),
                            zero_grad_each_step=True))
    start = len(calls)
    s.apply(Step(4))
    step = ["train", "loss", "step"]
    assert calls[start:] == step + step + ["eval", "evaluate", "train"] + step + step + ["eval", "evaluate", "train"]
    assert calls[:start].count("train") >= 1 and "step" not in calls[:start]  # train mode before the first gradient


def test_schedule_free_task_with_evaluation_equals_plain_training_loop():
    name = "schedulefree.AdamWScheduleFree"
    ts = TaskSpec(kind="mlp", n_samples=60, batch_size=16, eval_every=3, seed=3)
    s = Session(SessionSpec(optimizer=name, hparams={"lr": 0.01}, gradient=GradientSpec("task", task=ts),
                            zero_grad_each_step=True, seed=SEED))
    s.apply(Step(7))
    # the plain script: the task recipe (core/tasks.py), README "The step" for schedule-free
    seeds = task_seeds(ts.seed)
    tx, ty, vx, vy = make_task_data(ts)
    torch.manual_seed(seeds.init)
    model = build_model(ts)
    layers = {}
    for n, p in model.named_parameters():
        layers.setdefault(n.rpartition(".")[0], []).append(p)
    opt = catalogue.optimizer_class(name)([{"params": ps} for ps in layers.values()], lr=0.01)
    opt.train()
    torch.manual_seed(optimizer_seed(SEED))
    np.random.seed(optimizer_seed(SEED) % 2 ** 32)
    g = torch.Generator().manual_seed(seeds.order)
    n, bs = tx.shape[0], ts.batch_size
    per_epoch, i, val_loss = -(-n // bs), 0, None
    for step in range(1, 8):
        opt.train()
        if i == 0:
            order = torch.randperm(n, generator=g)
        idx = order[i * bs:(i + 1) * bs]
        i = (i + 1) % per_epoch
        opt.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(model(tx[idx]).squeeze(1), ty[idx].to(torch.float32)).backward()
        opt.step()
        if step % 3 == 0:
            opt.eval()
            model.eval()
            with torch.no_grad():
                val_loss = float(F.binary_cross_entropy_with_logits(model(vx).squeeze(1), vy.to(torch.float32)))
            model.train()
            opt.train()
    assert s.engine.last_eval["val_loss"] == val_loss, "evaluated at the averaged (eval-mode) weights"
    assert_same_run(s.param_list, s.optimizer, list(model.parameters()), opt, name)


# ----- files -----

@pytest.mark.parametrize("name", ["pytorch_optimizer.Lion", "schedulefree.AdamWScheduleFree", "prodigyopt.Prodigy",
                                  "pytorch_optimizer.SOAP", "pytorch_optimizer.SophiaH"])
def test_state_dicts_travel_both_ways_with_a_plain_script(tmp_path, name):
    s = Session(objective_spec(name))
    s.apply(Step(4))
    path = tmp_path / "opt.pt"
    files.save_optimizer(s, path)
    # a plain script loads the session's file and goes on exactly as the session does
    params = [p.detach().clone().requires_grad_(True) for p in s.param_list]
    opt = catalogue.optimizer_class(name)(params)
    opt.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
    need = catalogue.needs(name)
    rng = torch.random.get_rng_state()
    plain_step(opt, params, need)
    torch.random.set_rng_state(rng)
    s.apply(Step(1))
    assert_same_run(s.param_list, s.optimizer, params, opt, name)
    # and the plain script's file (saved in eval mode, as schedule-free advises) loads in a fresh session
    if "train_eval" in need:
        opt.eval()
    torch.save(opt.state_dict(), path)
    fresh = Session(objective_spec(name))
    fresh.apply(LoadOptimizer(path=str(path)))
    assert fresh.optimizer.state_dict()["state"].keys() == opt.state_dict()["state"].keys()
    fresh.apply(Step(1))  # steps (in train mode again)


def test_a_state_dict_of_another_class_is_refused(tmp_path):
    adam = Session(objective_spec("Adam"))
    adam.apply(Step(2))
    files.save_optimizer(adam, tmp_path / "adam.pt")
    lion = Session(objective_spec("pytorch_optimizer.Lion"))
    with pytest.raises(files.LoadError, match="from Adam, but the session uses pytorch_optimizer.Lion"):
        lion.apply(LoadOptimizer(path=str(tmp_path / "adam.pt")))
    lion.apply(Step(2))
    files.save_optimizer(lion, tmp_path / "lion.pt")
    sd = torch.load(tmp_path / "lion.pt", weights_only=True)
    sd["state"][0]["exp_avg"] = torch.zeros(7)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(files.LoadError, match="exp_avg.*shape \\[7\\]"):
        lion.apply(LoadOptimizer(path=str(tmp_path / "bad.pt")))


def test_saved_session_reopens_and_continues_bit_identically(tmp_path):
    from core import session_file
    s = Session(objective_spec("schedulefree.AdamWScheduleFree"))
    s.apply(Step(3))
    session_file.save_session(s, tmp_path / "s.optimlab")
    again = session_file.load_session(tmp_path / "s.optimlab")
    s.apply(Step(2))
    again.apply(Step(2))
    assert_same_run(s.param_list, s.optimizer, again.param_list, again.optimizer, "reopened")


# ----- a user's own file -----

MY_OPT = '''
import torch


class MySGD(torch.optim.Optimizer):
    """Plain SGD, written by hand.

    Parameters
    ----------
    params : iterable
        The tensors.
    lr : float
        Step size, in numpy's style.
    scale
        A factor on the gradient.
    """

    def __init__(self, params, lr=0.1, scale=1.0, sign_only=False):
        super().__init__(params, dict(lr=lr, scale=scale, sign_only=sign_only))

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                d = p.grad.sign() if g["sign_only"] else p.grad
                self.state[p]["last"] = d.clone()
                p.add_(d, alpha=-g["lr"] * g["scale"])


class Rest(torch.optim.Optimizer):
    """reST style.

    :param params: the tensors
    :param float lr: the step size
    :param beta: a decay
    :type beta: float
    """

    def __init__(self, params, lr=0.01, beta=None):
        super().__init__(params, dict(lr=lr, beta=beta))

    def step(self, closure=None):
        pass


class NoDoc(torch.optim.Optimizer):
    def __init__(self, params, lr=0.01, mode="fast"):
        super().__init__(params, dict(lr=lr, mode=mode))

    def step(self, closure=None):
        pass
'''


def test_user_optimizer_file_is_refused_until_trusted_then_works(tmp_path):
    path = tmp_path / "my_opt.py"
    path.write_text(MY_OPT)
    name = optimizer_names.file_name(str(path), "MySGD")
    spec = objective_spec(name, hparams={"lr": 0.05})
    with pytest.raises(trust.UntrustedScript):
        Session(spec)
    trust.trust_file(str(path))
    s = Session(spec)
    s.apply(Step(3))
    info = catalogue.info(name)
    assert info.hparam("lr").doc == "Step size, in numpy's style." and info.hparam("scale").doc
    assert list(s.optimizer.state[s.params["t0"]]) == ["last"]
    # the same class in a plain script
    cls = catalogue.optimizer_class(name)
    params = plain_tensors(SHAPES)
    opt = cls(params, lr=0.05)
    torch.manual_seed(optimizer_seed(SEED))
    np.random.seed(optimizer_seed(SEED) % 2 ** 32)
    for _ in range(3):
        plain_step(opt, params, frozenset())
    assert_same_run(s.param_list, s.optimizer, params, opt, "file")
    # a changed file is a new question
    path.write_text(MY_OPT + "\n# changed\n")
    with pytest.raises(trust.UntrustedScript):
        Session(spec)


def test_rewinding_brings_numpys_generator_back_for_an_optimizer_that_draws_from_it(tmp_path):
    """An optimizer drawing from numpy's global generator every step: going back to a step and
    running on repeats the run, in place or from a checkpoint."""
    path = tmp_path / "noise.py"
    path.write_text(NUMPY_NOISE)
    trust.trust_file(str(path))
    s = Session(objective_spec(optimizer_names.file_name(str(path), "NumpyNoise")))
    s.apply(Step(40))
    params = [p.detach().clone() for p in s.param_list]
    for k in (17, 39, 1, 0):
        s.goto(k)
        s.apply(Step(40 - k))  # a new branch from step k
        assert all(torch.equal(a, b) for a, b in zip(s.param_list, params)), f"from step {k}"
    from core import session_file  # and from a saved session's checkpoints
    session_file.save_session(s, tmp_path / "s.optimlab")
    again = session_file.load_session(tmp_path / "s.optimlab")
    np.random.seed(12345)  # whatever numpy's generator holds meanwhile
    again.goto(25)
    again.apply(Step(15))
    assert all(torch.equal(a, b) for a, b in zip(again.param_list, params)), "reopened"


def test_forms_read_numpy_rest_and_missing_docstrings(tmp_path):
    path = tmp_path / "my_opt.py"
    path.write_text(MY_OPT)
    trust.trust_file(str(path))
    rest = catalogue.info(optimizer_names.file_name(str(path), "Rest"))
    assert rest.hparam("lr").doc == "the step size" and rest.hparam("beta").kind == "float"
    assert rest.hparam("beta").optional
    nodoc = catalogue.info(optimizer_names.file_name(str(path), "NoDoc"))
    assert nodoc.summary == "NoDoc" and nodoc.hparam("mode").kind == "text" and nodoc.hparam("lr").doc == ""


def test_only_a_plain_python_file_is_run(tmp_path):
    archive = tmp_path / "evil.py"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("__main__.py", "raise SystemExit('ran')")
    trust.trust_all()
    with pytest.raises(SpecError, match="not Python source text"):
        Session(objective_spec(optimizer_names.file_name(str(archive), "Evil")))
    text = tmp_path / "my_opt.txt"
    text.write_text(MY_OPT)
    with pytest.raises(SpecError, match="not a .py file"):
        Session(objective_spec(f"file:{text}:MySGD"))


def test_cli_runs_a_file_optimizer_only_with_trust_script(tmp_path, capsys):
    (tmp_path / "my_opt.py").write_text(MY_OPT)
    spec = objective_spec("file:my_opt.py:MySGD")  # relative to the session file's folder
    (tmp_path / "run.json").write_text(dumps(spec, ()))
    assert cli.main(["run", str(tmp_path / "run.json"), "--steps", "2"]) == 2
    assert "--trust-script" in capsys.readouterr().err
    assert cli.main(["run", str(tmp_path / "run.json"), "--steps", "2", "--trust-script", "--print-state"]) == 0
    assert "'last'" in capsys.readouterr().out


# ----- names -----

@pytest.mark.parametrize("name, message", [
    ("os.system", "a qualified name starts with one of"),
    ("pytorch_optimizer.Lion; rm", "a qualified name starts with one of"),
    ("file:/tmp/x.py", "file:PATH.py:ClassName"),
    ("file:/tmp/x.sh:Opt", "not a .py file"),
    ("pytorch_optimizer.NoSuchThing", "has no optimizer class NoSuchThing"),
])
def test_bad_optimizer_names_are_refused_in_one_sentence(name, message):
    with pytest.raises(SpecError, match=message):
        Session(objective_spec(name))


def test_spec_json_accepts_qualified_names():
    text = ('{"format": "optimlab-spec", "version": 1, "spec": {"optimizer": "prodigyopt.Prodigy", '
            '"hparams": {"d_coef": 0.5}, "tensors": [{"name": "w", "shape": [3]}], '
            '"gradient": {"kind": "objective", "objective": "quadratic"}}}')
    spec, _ = loads(text)
    s = Session(spec)
    s.apply(Step(2))
    assert s.optimizer.param_groups[0]["d_coef"] == 0.5


def test_cli_lists_collections_and_skipped_classes(capsys):
    assert cli.main(["optimizers"]) == 0
    out = capsys.readouterr().out
    assert "== torch.optim ==" in out and "== pytorch_optimizer" in out and "== schedulefree" in out
    assert "pytorch_optimizer.SophiaH:" in out and "create_graph=True" in out
    assert "skipped: pytorch_optimizer.Lookahead: wraps another optimizer" in out


# ----- the whole collection, briefly -----

# the broad test's only edit: SpectralSphere's default solver takes ~1 s a step even on a 3x4 matrix
SMOKE_HPARAMS = {"pytorch_optimizer.SpectralSphere": {"solver_max_iterations": 3}}


def test_every_usable_class_steps_in_a_session_as_in_a_plain_script():
    """Every class listed as usable takes two steps with its defaults, equal to the plain loop's,
    and its state_dict survives a file; one that cannot must be listed as skipped instead."""
    failed = []
    for found in extra_optimizers.listing():
        if found.reason is not None:
            continue
        name = found.name
        need = catalogue.needs(name)
        shapes = SHAPES if "2d" not in need else [(3, 4), (4, 2)]
        try:
            hp = SMOKE_HPARAMS.get(name, {})
            s = Session(objective_spec(name, shapes, hparams=hp))
            s.apply(Step(2))
            params = plain_tensors(shapes)
            opt = catalogue.optimizer_class(name)(params, **hp)
            if "train_eval" in need:
                opt.train()
            torch.manual_seed(optimizer_seed(SEED))
            np.random.seed(optimizer_seed(SEED) % 2 ** 32)
            for _ in range(2):
                plain_step(opt, params, need)
            assert_same_run(s.param_list, s.optimizer, params, opt, name)
            buf = io.BytesIO()  # its state can be saved and read back by the safe loader
            torch.save(s.optimizer.state_dict(), buf)
            buf.seek(0)
            assert same(torch.load(buf, weights_only=True), opt.state_dict()), f"{name}: state changed in a file"
        except Exception as e:  # noqa: BLE001 - collect every class that fails, then say them all
            failed.append(f"{name}: {type(e).__name__}: {str(e)[:150]}")
    assert not failed, "\n".join(failed)


def test_lists_of_state_tensors_are_shown_and_read_like_any_state_tensor():
    """SOAP keeps its preconditioner's eigenbases as a list of matrices: each is a state entry."""
    from core.observe import exact_value, make_snapshot
    from core.snapshot import ArrayView
    s = Session(objective_spec("pytorch_optimizer.SOAP"))
    s.apply(Step(2))
    q = s.optimizer.state[s.params["t0"]]["Q"]
    shown = make_snapshot(s, 0).tensor("t0").state
    assert isinstance(shown["Q[1]"], ArrayView) and shown["Q[1]"].shape == tuple(q[1].shape) == (4, 4)
    assert "Q" not in shown
    assert exact_value(s, "t0", "Q[1]", (2, 3)) == float(q[1][2, 3])
    assert torch.equal(s.engine.state_tensor("t0", "GG[0]"), s.optimizer.state[s.params["t0"]]["GG"][0])


@pytest.mark.parametrize("name", ["pytorch_optimizer.SophiaH", "schedulefree.AdamWScheduleFree",
                                  "pytorch_optimizer.Kron"])
def test_rewinding_and_stepping_again_repeats_the_run_bit_for_bit(name):
    """SophiaH draws Hutchinson probes from torch's generator, Kron from numpy's: a rewind brings
    those back too."""
    s = Session(objective_spec(name))
    s.apply(Step(6))
    params = [p.detach().clone() for p in s.param_list]
    sd = s.optimizer.state_dict()
    s.goto(2)
    s.apply(Step(4))  # a new branch, from step 2 of the first
    assert s.step_count == 6
    assert all(torch.equal(a, b) for a, b in zip(s.param_list, params))
    assert same(s.optimizer.state_dict()["state"], sd["state"])


# ----- export and explain -----

def test_exported_scripts_with_extras_reproduce_in_a_plain_interpreter(tmp_path):
    """The script imports the collection (or loads the user's file), seeds torch's generator, and
    does what the engine does for the class: backward(create_graph=True), the closure, train()/eval()."""
    from core.export import write_script
    from .test_export import _run_many
    (tmp_path / "my_opt.py").write_text(MY_OPT)
    trust.trust_file(str(tmp_path / "my_opt.py"))
    sophia = Session(objective_spec("pytorch_optimizer.SophiaH"))
    sophia.apply(Step(3))
    sophia.apply(SetHparam(0, "lr", 0.03))
    sophia.apply(AddGroup((TensorSpec("extra", (2, 2)),), {"lr": 0.01}))
    sophia.apply(Step(2))
    ts = TaskSpec(kind="mlp", n_samples=60, batch_size=16, eval_every=2, seed=3)
    built = {
        "sophia": sophia,
        "schedule_free_task": Session(SessionSpec(optimizer="schedulefree.AdamWScheduleFree", hparams={"lr": 0.01},
                                                  gradient=GradientSpec("task", task=ts), zero_grad_each_step=True,
                                                  seed=SEED), [Step(5)]),
        "closure": Session(objective_spec("schedulefree.SGDScheduleFreeClosure"), [Step(3)]),
        "file": Session(objective_spec(optimizer_names.file_name(str(tmp_path / "my_opt.py"), "MySGD")), [Step(3)]),
    }
    scripts = []
    for name, s in built.items():
        scripts.append(tmp_path / f"{name}.py")
        write_script(s, scripts[-1])
    text = scripts[0].read_text()
    assert "import pytorch_optimizer" in text and "loss.backward(create_graph=True)" in text
    assert "optimizer.eval()" in scripts[1].read_text() and "optimizer.step(closure)" in scripts[2].read_text()
    for name, out in zip(built, _run_many(scripts, tmp_path)):
        assert out.strip().splitlines()[-1] == "reproduced", (name, out)


def test_explain_refuses_an_extra_in_one_sentence():
    from core.explain import explain
    s = Session(objective_spec("pytorch_optimizer.SOAP"), [Step(1)])  # Lion, Prodigy, schedule-free: explained
    with pytest.raises(SpecError, match=r"^pytorch_optimizer.SOAP cannot be explained: the formulas are torch"):
        explain(s, "t0", (0, 0))


def test_a_breakpoint_names_one_matrix_of_a_list_kept_in_the_state():
    """SOAP's GG (and Q) are lists of matrices: ``t0.GG[1] abs > x`` watches the second one."""
    from core.breakpoints import BreakpointError, parse
    alone = Session(objective_spec("pytorch_optimizer.SOAP"))
    peaks = []
    for _ in range(6):
        alone.apply(Step(1))
        peaks.append(float(alone.optimizer.state[alone.params["t0"]]["GG"][1].abs().amax()))
    threshold = (min(peaks) + max(peaks)) / 2
    first = 1 + next(i for i, v in enumerate(peaks) if v > threshold)
    assert parse(f"t0.GG[1] abs > {threshold!r}").target == "t0.GG[1]"
    assert parse("t0.Q[0] nonfinite").text == "t0.Q[0] nonfinite"
    s = Session(objective_spec("pytorch_optimizer.SOAP"))
    s.set_breakpoints([f"t0.GG[1] abs > {threshold!r}"])
    hits = [s.advance() for _ in range(first)]
    assert hits[:-1] == [None] * (first - 1) and hits[-1].step == first
    s.set_breakpoints(["t0.Q[5] nonfinite"])
    with pytest.raises(BreakpointError, match=r"t0 has no 'Q\[5\]'.*Q\[0\], Q\[1\]"):
        s.advance()


def test_what_a_class_prints_when_built_goes_to_stderr_not_into_the_output(capsys):
    """prodigyopt prints "Using decoupled weight decay" in its constructor: at every rebuild or
    rewind that would mix into `optimlab run`'s output (a JSON state, a table)."""
    s = Session(objective_spec("prodigyopt.Prodigy", hparams={"weight_decay": 0.01}))
    s.apply(Step(3))
    s.goto(1)
    out = capsys.readouterr()
    assert out.out == "" and "decoupled weight decay" in out.err
