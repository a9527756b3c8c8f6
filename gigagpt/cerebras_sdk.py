"""The Cerebras PyTorch SDK set up as gigaGPT sets it up: the backend (and a cluster's options), the
compiled model, its optimizer and LR schedule, and the traced train and eval steps. Used by the
Cerebras trainer and by check-csx (gigagpt/cerebras.py); imports the SDK only when called.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

import torch

from gigagpt.config import REPO, Config
from gigagpt.model import GPT


def setup(cfg: Config, target: str, artifact_dir: str, **csx):
    """Backend, model, compiled model, optimizer and LR schedule, as gigaGPT sets them up."""
    import cerebras.pytorch as cstorch

    t = cfg.train
    backend = cstorch.backend(target, artifact_dir=artifact_dir, **csx)
    if t.dtype == "bfloat16":
        cstorch.amp.set_half_dtype("bfloat16")
    torch.manual_seed(t.seed)
    with backend.device:  # on CSX a lazy device: weights are traced, not allocated here
        model = GPT(cfg.model)
    model.fused_loss = False  # traced for the system: the plain head and loss
    compiled = cstorch.compile(model, backend)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": t.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = cstorch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), eps=t.eps)
    # gigagpt.train.lr_at, in the SDK's schedulers (on CSX the schedule runs on the system)
    lrs = cstorch.optim.lr_scheduler
    cosine = lrs.CosineDecayLR(optimizer, initial_learning_rate=t.lr, end_learning_rate=t.min_lr_ratio * t.lr,
                               total_iters=max(1, t.max_steps - 1 - t.warmup_steps))
    if t.warmup_steps:
        warm = lrs.LinearLR(optimizer, initial_learning_rate=t.lr / t.warmup_steps, end_learning_rate=t.lr,
                            total_iters=max(1, t.warmup_steps - 1))
        schedule = lrs.SequentialLR(optimizer, [warm, cosine], milestones=[t.warmup_steps])
    else:
        schedule = cosine
    half = cstorch.amp.autocast if t.dtype == "bfloat16" else nullcontext

    @cstorch.trace
    def train_step(x, y):
        lr = schedule.get_last_lr()[0]  # the rate this step uses
        with half():
            loss = compiled(x, y)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, t.grad_clip if t.grad_clip > 0 else float("inf"))
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        return loss, norm, lr

    @cstorch.trace
    @torch.no_grad()
    def eval_step(x, y):
        with half():
            return compiled(x, y)

    return backend, model, optimizer, schedule, train_step, eval_step


def sdk_version() -> str:
    import cerebras.pytorch as cstorch

    return cstorch.__version__


def csx_options(cfg: Config, dataset: Path) -> dict:
    """The backend's keyword arguments for a cluster: the [cerebras] section as the SDK takes it."""
    import cerebras.pytorch as cstorch

    c = cfg.cerebras
    if c.target != "CSX":
        return {}
    if not c.mgmt_address:
        os.environ.setdefault("CSCONFIG_PATH", c.cluster_config)
    cluster = cstorch.distributed.ClusterConfig(
        mgmt_address=c.mgmt_address or None, mgmt_namespace=c.mgmt_namespace or None,
        credentials_path=c.credentials_path or None, num_csx=c.num_systems,
        mount_dirs=sorted({*c.mount_dirs, str(dataset.resolve()), str(REPO)}),
        python_paths=sorted({*c.python_paths, str(REPO)}))
    return {"cluster_config": cluster, "validate_only": c.validate_only, "compile_only": c.compile_only}
