"""Checkpoints written by the libraries resume as sessions: PyTorch Lightning's Trainer mid-run (at
its global_step, going on bit for bit as the Trainer did) and a Hugging Face Trainer folder.

The LightningModule wraps a built-in task's model (so its weights are named ``model.fc1.weight``)
and trains as the task's rules say, with the data unshuffled (a DataLoader without shuffle hands
out batch i as rows i*bs..(i+1)*bs, which is rule 3 with ``shuffle`` off)."""
import pytest
import torch
import torch.nn.functional as F

from core.resume import resume_spec
from core.session import Session
from core.spec import GradientSpec, SessionSpec
from core.task_spec import TaskSpec
from core.tasks import build_model, make_task_data, task_seeds
from tests.realruns.test_library_checkpoints import hf_checkpoint  # noqa: F401 (a fixture)

TASK = TaskSpec("mlp", dataset="moons", n_samples=60, hidden=(8,), activation="relu", batch_size=16, seed=3,
                shuffle=False)


@pytest.fixture(scope="module")
def lightning_run(tmp_path_factory):
    pl = pytest.importorskip("pytorch_lightning")

    class TaskModule(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(task_seeds(TASK.seed).init)
            self.model = build_model(TASK)

        def training_step(self, batch, _):
            x, y = batch
            return F.binary_cross_entropy_with_logits(self.model(x).squeeze(1), y.to(torch.float32))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.02)

    train_x, train_y, _, _ = make_task_data(TASK)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train_x, train_y),
                                         batch_size=TASK.batch_size, shuffle=False)
    folder = tmp_path_factory.mktemp("pl")
    saver = pl.callbacks.ModelCheckpoint(dirpath=folder, every_n_train_steps=5, save_top_k=-1,
                                         filename="{step}")
    module = TaskModule()
    trainer = pl.Trainer(max_steps=11, accelerator="cpu", logger=False, callbacks=[saver],
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, loader)
    return folder / "step=5.ckpt", module, trainer.optimizers[0]


def test_a_lightning_checkpoint_resumes_at_its_global_step_and_goes_on_as_the_trainer_did(lightning_run):
    path, module, opt = lightning_run
    spec = SessionSpec(optimizer="Adam", hparams={"lr": 0.02}, gradient=GradientSpec(kind="task", task=TASK),
                       zero_grad_each_step=True)
    r = resume_spec(spec, path)
    assert (r.step, r.step_from) == (5, "global_step")
    assert r.notes[0].startswith("PyTorch Lightning checkpoint: model weights at state_dict")
    s = Session(r.spec, blobs=r.blobs)
    assert s.step_count == 5
    s.run(6)
    for n, p in module.model.named_parameters():
        assert torch.equal(s.params[n], p.detach()), n
    want = opt.state_dict()["state"]
    for i, st in s.optimizer.state_dict()["state"].items():
        for k, v in st.items():
            assert torch.equal(v, want[i][k]), (i, k)


HF_SCRIPT = '''
import torch


class Tiny(torch.nn.Module):  # the Trainer's model, with the forward a task script gives it
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(4, 8)
        self.norm = torch.nn.LayerNorm(8)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.norm(self.embed(x)))


def make_model():
    return Tiny()


def make_data():
    x = torch.randn(32, 4)
    y = torch.arange(32) % 2
    return x[:24], y[:24], x[24:], y[24:]


def loss_fn(output, target):
    return torch.nn.functional.cross_entropy(output, target)
'''


def test_a_hugging_face_trainer_folder_resumes_at_its_global_step_with_its_state_by_name(hf_checkpoint, tmp_path,
                                                                                          capsys):
    """The Trainer groups weights apart from biases and norms (weight decay) without saving names:
    the state goes to the right parameters by their shapes; torch's generator comes from rng_state.pth."""
    from core import cli, session_file, trust
    folder, trainer = hf_checkpoint
    script = tmp_path / "tiny.py"
    script.write_text(HF_SCRIPT)
    out = tmp_path / "s.optimlab"
    try:
        assert cli.main(["resume", str(folder), "--task", str(script), "--trust-script", "-o", str(out)]) == 0
        assert "step 4 from trainer_state.global_step" in capsys.readouterr().out
        s = session_file.load_session(out)
    finally:
        trust.forget()
    assert s.spec.optimizer == "AdamW" and s.step_count == 4
    model, opt = trainer.model, trainer.optimizer
    for n, p in model.named_parameters():
        assert torch.equal(s.params[n], p.detach()), n
    names = {p: n for n, p in model.named_parameters()}
    mine = {n: s.optimizer.state[p] for n, p in s.params.items()}
    for p, st in opt.state.items():
        for k, v in st.items():
            assert torch.equal(mine[names[p]][k], v), (names[p], k)
    assert [g["weight_decay"] for g in s.optimizer.param_groups] == [0.01, 0.0]
    from core.safe_load import load_torch
    saved = load_torch(folder / "rng_state.pth")["cpu"]  # numpy's state in it stays unloaded
    assert torch.equal(s.engine.state()["torch_rng"], saved)
