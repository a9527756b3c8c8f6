"""Each step's loss and gradient norm, and the non-finite guard, without a host synchronisation
per step on accelerators.

On a GPU, `.item()` waits for the device to drain its queue; reading the loss every step keeps
the host from running ahead. So the loss is summed on the device and read at *read steps* only
(a step that logs, evaluates, checkpoints or stops), and a non-finite loss or gradient norm sets
an on-device flag that fused AdamW reads as `found_inf`: it skips that update and every later
one, so the weights stay those of the last good step. At the next read step the run fails naming
the first bad step, before anything is checkpointed.

On CPU there is no queue to drain: a read costs nothing, so every step is a read step and the
check comes before the update, exactly as before (bitwise the same numbers). The same holds
where the optimizer is not fused (no `found_inf`), e.g. MPS.
"""
from __future__ import annotations

import math

import torch

from gigagpt import dist


def reads_every_step(device: torch.device, optimizer) -> bool:
    """Whether every step is a read step (see the module's docstring)."""
    return device.type == "cpu" or not optimizer.defaults.get("fused")


def failure(step: int, loss: float, norm: float) -> str:
    return (f"non-finite loss ({loss}) or gradient norm ({norm}) at step {step}; "
            "the bad weights were not checkpointed")


class Tally:
    """The loss since the last train line (`loss_sum`, host, read steps only), the last read
    gradient norm (`norm`), and the first non-finite step, kept on the device in between."""

    def __init__(self, device: torch.device, optimizer, world: int, loss_sum: float, every_step: bool):
        self.device, self.optimizer, self.world, self.every_step = device, optimizer, world, every_step
        self.loss_sum, self.norm, self._norm = loss_sum, None, None
        # float64: a sum of float32 losses rounds as the host's float sum did (MPS has no float64)
        self._pending = torch.zeros((), dtype=torch.float32 if device.type == "mps" else torch.float64,
                                    device=device)
        self._first_bad = torch.zeros((), dtype=torch.int64, device=device)  # 0: none yet
        self._bad_values = torch.zeros(2, device=device)  # the first bad step's loss and norm

    def add(self, step: int, loss: torch.Tensor, norm) -> None:
        """Step `step` (counted from 1), not applied yet: its mean loss and gradient norm."""
        self._pending += loss.detach().to(self._pending.dtype)
        self._norm = norm
        if self.every_step:
            return
        full = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        bad = (~(torch.isfinite(loss) & torch.isfinite(full))).float()
        if self.world > 1:  # a rank's own non-finite loss skips the update on every rank
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        new = (bad > 0) & (self._first_bad == 0)
        self._first_bad = torch.where(new, step, self._first_bad)
        self._bad_values = torch.where(new, torch.stack([loss.detach().float(), full.detach().float()]),
                                       self._bad_values)
        self.optimizer.found_inf = (self._first_bad != 0).float()  # fused AdamW: skip the update

    def read(self, step: int, stop: bool) -> tuple[bool, str | None]:
        """At a read step: (whether any rank was told to stop, a failure or None). Folds the loss
        summed since the previous read into `loss_sum` and reads the gradient norm. One all-reduce
        with several processes: the job's mean loss and the stop votes."""
        loss, votes = self._pending.item(), float(stop)
        self._pending.zero_()
        if self.world > 1:
            loss, votes = dist.sum_across([loss, votes], self.device)
            loss /= self.world
        self.norm = dist.full_norm(self._norm)
        if self.every_step:
            if not (math.isfinite(loss) and math.isfinite(self.norm)):  # before the update: weights stay good
                return votes > 0, failure(step, loss, self.norm)
        elif first := int(self._first_bad.item()):
            return votes > 0, failure(first, *self._bad_values.tolist())
        self.loss_sum += loss
        return votes > 0, None
