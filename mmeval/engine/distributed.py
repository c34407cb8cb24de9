"""Data-parallel evaluation under ``torchrun`` or ``accelerate launch`` (torch.distributed).

    torchrun --nproc-per-node 8 -m mmeval run --model hf-llava --tasks vqav2_val --batch-size 16
    accelerate launch --num-processes 8 -m mmeval run --model hf-llava --tasks vqav2_val

Each rank builds its own copy of the model on its own GPU (``cuda:LOCAL_RANK``), generates the
documents whose index ``i % world_size == rank`` (interleaved, so long and short documents
spread evenly) and writes their responses to a shard; rank 0 waits for every shard, merges
them in document order and scores, exactly as one process would: the merged run equals a
single-process run sample for sample. All ranks share the response cache (SQLite in WAL
mode; put it on a local or lock-capable file system), and the configuration hash does not
include the world size, so an interrupted run resumes with any number of ranks.

The launcher's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``)
is the contract, as for any torch.distributed program. The collectives here carry only small
Python objects (the run directory, barriers), so they go through a gloo group on the CPU,
created beside whatever group the launcher or the model made (NCCL).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

# Rank 0 waits at the barrier for the slowest rank's whole share of a task: hours on a big one.
DEFAULT_TIMEOUT_S = 24 * 3600


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    group: Any = None  # the gloo process group (None: the default group, or one process)
    owns_default_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def owns(self, index: int) -> bool:
        """Whether document ``index`` is this rank's to generate."""
        return index % self.world_size == self.rank

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def close(self) -> None:
        if self.owns_default_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_default_group = False

    def describe(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "sharding": "index % world_size", "merged_by": 0}


def from_env(timeout_s: float = DEFAULT_TIMEOUT_S) -> Dist:
    """The rank layout the launcher set up; one process when there is none."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Dist()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        # Adapters put the model on "cuda", the current device: one GPU per rank, not all on GPU 0.
        torch.cuda.set_device(local % torch.cuda.device_count())
    timeout = timedelta(seconds=timeout_s)
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timeout)
        return Dist(rank=rank, world_size=world, local_rank=local, owns_default_group=True)
    group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo", timeout=timeout)
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, group=group)
