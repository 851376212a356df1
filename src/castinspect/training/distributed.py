"""Training under ``torchrun``: one process per CPU socket or GPU, gradients averaged (DDP).

``castinspect train`` started by ``torchrun --nproc-per-node N`` finds the process group in the
environment ``torchrun`` sets (RANK, WORLD_SIZE, MASTER_ADDR, ...) and joins it: ``gloo`` on the
CPU, ``nccl`` on CUDA GPUs. The run is the single-process run split up, not a different recipe:

- every process shuffles and augments each global batch of ``train.batch_size`` photos with the
  same seeded generator, then takes its own share of it (photos rank, rank + N, ...): the same
  steps, the same photos and the same augmented views as one process, in N pieces (augmenting
  the whole batch in every process keeps the generators in step; it costs a few percent);
- DDP averages the gradients; each share's loss is weighted by its size, so the step is the
  single process's step up to BatchNorm's per-share batch statistics;
- before each validation the shipped weights are made rank 0's exactly, then every process
  judges its share of the validation photos and the sums are combined: validation runs once,
  split up, and early stopping decides the same everywhere;
- a time-limited schedule is cut by rank 0's estimate and shared;
- the recipe search runs in rank 0 alone (its trials are small single-process fits) while the
  others wait for the recipe it chooses; rank 0 alone writes the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def main(self) -> bool:
        """The process that searches, writes and reports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self, device: torch.device) -> torch.device:
        """The GPU of this process on its node (one process per GPU); the CPU stays the CPU."""
        return torch.device("cuda", self.local_rank) if self.distributed and device.type == "cuda" else device

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` whose backward pass averages gradients over the processes."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.local_rank] if next(model.parameters()).is_cuda else None
        return DistributedDataParallel(model, device_ids=ids)

    def share(self, n: int) -> tuple[slice, float]:
        """This process's positions in a global batch of ``n`` photos, and the weight of its mean
        loss that makes the averaged gradient the whole batch's. A batch smaller than the world
        (a last one of a photo or two) is judged whole in every process."""
        if not self.distributed or n < self.size:
            return slice(None), 1.0
        mine = len(range(self.rank, n, self.size))
        return slice(self.rank, None, self.size), mine * self.size / n

    def sum(self, *values: float) -> list[float]:
        """``values`` summed over the processes (each process passes its own)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def from_main(self, obj):
        """Rank 0's ``obj`` in every process (the others pass anything, e.g. None)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def align(self, model: torch.nn.Module) -> None:
        """Make ``model``'s weights and buffers rank 0's exactly (BatchNorm statistics and a weight
        average drift apart by their per-share batches)."""
        if not self.distributed:
            return
        with torch.no_grad():
            for t in model.state_dict().values():
                dist.broadcast(t, src=0)


SINGLE = World()
_world = SINGLE


def join(device: torch.device, timeout_s: float) -> World:
    """Join the process group ``torchrun`` describes in the environment (once per process); one
    process on its own when started without it. ``timeout_s``: how long a process waits for the
    others, e.g. while rank 0 searches recipes."""
    global _world
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or _world.distributed:
        return _world
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    _world = World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), backend)
    return _world


def current() -> World:
    return _world


def leave() -> None:
    """Leave the process group, after the last collective step of the run."""
    global _world
    if _world.distributed:
        dist.destroy_process_group()
    _world = SINGLE
