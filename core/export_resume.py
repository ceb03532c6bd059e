"""The resumed part of an exported script: a branch that starts at a checkpoint's step.

A resumed branch (``core.resume``) does not start from the task's fresh model: the engine
builds the task, the optimizer and the scheduler as usual, then loads the checkpoint's data
(``Engine._resume``). The exported script does the same, in the same order, from the data
optimlab read from the checkpoint (the timeline's stored blob), written beside the script as
a ``torch.save`` file and read back with ``weights_only=True``: the model's weights by name
(and buffers), the optimizer's state_dict, the scheduler's state when the spec has a
scheduler, the data order at the step (``Task.seek``: one permutation drawn per epoch begun),
torch's generator when the checkpoint carried one, and the step count.
"""
from __future__ import annotations

from pathlib import Path

from .spec import ResumeSpec


def file_name(script_name: str) -> str:
    """The checkpoint data's file beside the script (``run.py`` -> ``run.checkpoint.pt``)."""
    return f"{Path(script_name).stem}.checkpoint.pt"


def what_it_holds(r: ResumeSpec, data: dict, scheduler: bool) -> list[str]:
    """What the script takes from the checkpoint's data, in words (the header and the comment)."""
    held = ["the model's weights"]
    if data.get("buffers"):
        held.append("its buffers")
    if r.optimizer_state:
        held.append("the optimizer's state_dict")
        if scheduler and data.get("scheduler") is not None:
            held.append("the scheduler's state")
    if data.get("rng") is not None:
        held.append("torch's generator state")
    return held


def lines(r: ResumeSpec, data: dict, key: str, beside: str, *, scheduler: bool, switch: bool,
          shuffle: bool) -> list[str]:
    """The script's lines that stand it at step ``r.step`` of the checkpoint, after the optimizer
    and scheduler are built (``key``: the stored() entry of the checkpoint's data, the file
    ``beside`` the script)."""
    name = Path(r.path).name if r.path else "a checkpoint"
    held = what_it_holds(r, data, scheduler)
    where = [f"at export: {r.path!r}"] if r.path else []
    where += [f"SHA-256 {r.sha256[:16]}..."] if r.sha256 else []
    out = ["", f"# ----- resumed at step {r.step:,} from the checkpoint {name} -----",
           f"# optimlab read {name}" + (f" ({', '.join(where)})" if where else "") + " with weights_only=True;",
           f"# {beside}, beside this script, holds what this run takes from it:",
           f"# {', '.join(held)}.",
           f"checkpoint = stored({key!r})",
           "with torch.no_grad():  # the model's weights, by name",
           '    for name, value in checkpoint["params"].items():',
           "        params[name].copy_(value)"]
    if data.get("buffers"):
        out += ['    for name, value in checkpoint["buffers"].items():',
                "        model.get_buffer(name).copy_(value)"]
    if r.optimizer_state:
        out.append('optimizer.load_state_dict(checkpoint["optimizer"])')
        if switch:
            out.append("optimizer.train()  # schedule-free: a state saved in eval mode steps in train mode")
        if scheduler and data.get("scheduler") is not None:
            out.append('scheduler.load_state_dict(checkpoint["scheduler"])')
    else:
        out.append("# not its optimizer state: another optimizer tried from the checkpoint's step starts fresh")
    out += _seek(r.step, shuffle)
    if data.get("rng") is not None:
        out.append('torch.random.set_rng_state(checkpoint["rng"])  # torch\'s generator, as the checkpoint saved it')
    out.append(f"step_count, val_loss = {r.step}, None")
    return out


def _seek(step: int, shuffle: bool) -> list[str]:
    """``Task.seek``: the order generator as a run that served ``step`` batches left it."""
    if not shuffle:
        return [f"batch_in_epoch = {step} % steps_per_epoch  # the data order at step {step:,} (no shuffling)",
                "order = torch.arange(n_train)"]
    return [f"# the data order at step {step:,} (as core/tasks.py Task.seek): one permutation drawn per epoch begun",
            f"epoch, batch_in_epoch = divmod({step}, steps_per_epoch)",
            "for _ in range(epoch + (batch_in_epoch > 0)):",
            "    order = torch.randperm(n_train, generator=order_generator)"]
