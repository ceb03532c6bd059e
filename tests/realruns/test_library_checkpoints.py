"""Checkpoints written by PyTorch Lightning's Trainer and Hugging Face's Trainer, opened by name.

Each library trains a tiny model for a few steps and saves as it always does; the test then
compares every state tensor `inspect` shows, by parameter name, with the live optimizer's."""
import pytest
import torch

from core.checkpoints import open_checkpoint


def _state_by_name(model, optimizers) -> dict:
    names = {p: n for n, p in model.named_parameters()}
    return {names[p]: st for opt in optimizers for p, st in opt.state.items()}


class Extra:  # a hyperparameter of a class of the user's, pickled into the checkpoint by Lightning
    def __init__(self, k):
        self.k = k


@pytest.fixture(scope="module")
def lightning_ckpt(tmp_path_factory):
    pl = pytest.importorskip("pytorch_lightning")

    class TwoOptimizers(pl.LightningModule):
        def __init__(self, hidden=8, extra=None):
            super().__init__()
            self.save_hyperparameters()
            self.automatic_optimization = False
            self.fc = torch.nn.Linear(4, hidden)
            self.out = torch.nn.Linear(hidden, 1)

        def training_step(self, batch, _):
            x, y = batch
            a, b = self.optimizers()
            loss = torch.nn.functional.mse_loss(self.out(torch.relu(self.fc(x))), y)
            a.zero_grad()
            b.zero_grad()
            self.manual_backward(loss)
            a.step()
            b.step()

        def configure_optimizers(self):
            a = torch.optim.Adam(self.fc.parameters(), lr=1e-2)
            b = torch.optim.SGD(self.out.parameters(), lr=0.1, momentum=0.9)
            return [a, b], [torch.optim.lr_scheduler.StepLR(a, 2)]

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randn(32, 1))
    module = TwoOptimizers(extra=Extra(3))
    trainer = pl.Trainer(max_steps=5, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=8))
    path = tmp_path_factory.mktemp("pl") / "last.ckpt"
    trainer.save_checkpoint(path)
    return path, module, trainer.optimizers


def test_a_lightning_checkpoint_shows_both_optimizers_by_name_and_refuses_the_custom_hyperparameter(lightning_ckpt):
    path, module, optimizers = lightning_ckpt
    info = open_checkpoint(path)
    assert info.format == "PyTorch Lightning"
    a, b = info.optimizers
    assert (a.where, a.kind, b.where, b.kind) == ("optimizer_states[0]", "Adam/AdamW", "optimizer_states[1]", "SGD")
    assert [p.name for p in a.params] == ["fc.weight", "fc.bias"]
    assert [p.name for p in b.params] == ["out.weight", "out.bias"]
    want = _state_by_name(module, optimizers)
    for p in a.params + b.params:
        assert set(p.state) == set(want[p.name])
        for k, v in want[p.name].items():
            assert torch.equal(p.state[k].tensor(), v), (p.name, k)
        assert torch.equal(p.weight.tensor(), module.state_dict()[p.name])
    assert [w for w, _ in info.schedulers] == ["lr_schedulers[0]"] and info.schedulers[0][1]["step_size"] == 2
    assert [(w, str(n)) for w, n in info.not_loaded] == [
        ("hyper_parameters.extra", f"not loaded: needs class {__name__}.Extra")]


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from transformers import Trainer, TrainingArguments

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Linear(4, 8)
            self.norm = torch.nn.LayerNorm(8)
            self.head = torch.nn.Linear(8, 2)

        def forward(self, x, labels=None):
            logits = self.head(self.norm(self.embed(x)))
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 32

        def __getitem__(self, i):
            return {"x": torch.randn(4, generator=torch.Generator().manual_seed(i)), "labels": i % 2}

    out = tmp_path_factory.mktemp("hf")
    args = TrainingArguments(output_dir=str(out), max_steps=4, save_steps=4, per_device_train_batch_size=8,
                             report_to=[], use_cpu=True, weight_decay=0.01, disable_tqdm=True, seed=0)
    torch.manual_seed(0)
    trainer = Trainer(model=Tiny(), args=args, train_dataset=Data())
    trainer.train()
    return out / "checkpoint-4", trainer


def test_a_hugging_face_trainer_folder_shows_adamw_state_by_name(hf_checkpoint):
    folder, trainer = hf_checkpoint
    assert (folder / "model.safetensors").exists() and (folder / "optimizer.pt").exists()
    info = open_checkpoint(folder)
    assert info.format == "Hugging Face Trainer" and info.info["trainer_state.global_step"] == 4
    (o,) = info.optimizers
    assert o.kind == "AdamW" and [g["weight_decay"] for g in o.groups] == [0.01, 0.0]
    model, opt = trainer.model, trainer.optimizer
    names = {p: n for n, p in model.named_parameters()}
    assert [p.name for p in o.params] == [names[p] for g in opt.param_groups for p in g["params"]]
    want = _state_by_name(model, [opt])
    for p in o.params:
        for k, v in want[p.name].items():
            assert torch.equal(p.state[k].tensor(), v), (p.name, k)
        assert torch.equal(p.weight.tensor(), model.state_dict()[p.name])
    refused = dict((w, str(n)) for w, n in info.not_loaded)
    assert refused["training_args"] == "not loaded: needs class transformers.training_args.TrainingArguments"
