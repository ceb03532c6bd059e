"""A user's DDP training script (gloo, CPU) that calls optimlab.watch on every rank.

    python ddp_script.py RANK WORLD PORT OUT_DIR

Rank 0 publishes; its address goes to OUT_DIR/address. Every rank writes the steps it has
finished to OUT_DIR/rankR.step. The run ends at the step named in OUT_DIR/stop_at (which the
test writes while every rank is paused, so all see it), then saves a
torch.distributed.checkpoint to OUT_DIR/dcp and, from rank 0, the state by name to OUT_DIR/ref.pt.
"""
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict
from torch.nn.parallel import DistributedDataParallel

import optimlab

rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
dist.init_process_group("gloo", rank=rank, world_size=world)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
ddp = DistributedDataParallel(model)
opt = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
w = optimlab.watch(opt, model=model, name="ddp")
if w.address:
    (out / "address.tmp").write_text(w.address)
    os.replace(out / "address.tmp", out / "address")
g = torch.Generator().manual_seed(rank)
x, y = torch.randn(32, 8, generator=g), torch.randn(32, 1, generator=g)
progress = out / f"rank{rank}.step"
stop_at = None
step = 0
while stop_at is None or step < stop_at:
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(ddp(x), y)
    loss.backward()
    w.report(loss=loss)
    opt.step()
    step += 1
    progress.write_text(str(step))
    if stop_at is None and (out / "stop_at").exists():
        stop_at = int((out / "stop_at").read_text())
    if step > 200_000:
        sys.exit("no stop_at after 200,000 steps")
w.close()
msd, osd = get_state_dict(model, opt)
dcp.save({"model": msd, "optim": osd, "step": step}, checkpoint_id=str(out / "dcp"))
if rank == 0:
    names = {p: n for n, p in model.named_parameters()}
    torch.save({"step": step, "momentum": {names[p]: s["momentum_buffer"] for p, s in opt.state.items()},
                "params": {n: p.detach().clone() for n, p in model.named_parameters()}}, out / "ref.pt")
dist.destroy_process_group()
