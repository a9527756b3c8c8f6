"""GPT-2 as gigaGPT builds it: learned positions, pre-LayerNorm blocks, 4x GELU MLP, tied LM head."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from gigagpt.config import ModelConfig
from gigagpt.fused_loss import linear_cross_entropy
from gigagpt.plan import padded_vocab


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        # q, k and v as one matmul: the same parameters as three projections, one kernel launch.
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.n_head, self.dropout, self.kind = cfg.n_head, cfg.dropout, cfg.attention

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        if self.kind == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            # Masked softmax for backends without SDPA. The mask comes from arange comparisons:
            # the Cerebras compiler rejects torch.triu on bool tensors.
            pos = torch.arange(T, device=x.device)
            future = pos[None, :] > pos[:, None]
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.float().masked_fill(future, float("-inf")).softmax(dim=-1).to(q.dtype)
            y = F.dropout(att, p) @ v
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.approximate = "tanh" if cfg.gelu == "tanh" else "none"  # tanh: what OpenAI's GPT-2 weights were trained with

    def forward(self, x):
        return self.dropout(self.proj(F.gelu(self.fc(x), approximate=self.approximate)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=1e-5, bias=cfg.bias)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=1e-5, bias=cfg.bias)
        self.mlp = MLP(cfg)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        x = x + self.resid_dropout(self.attn(self.ln_1(x)))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(padded_vocab(cfg), cfg.n_embd)  # pad_vocab_to: rows past vocab_size, never used
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=1e-5, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, padded_vocab(cfg), bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        self.checkpoint_blocks = False  # activation checkpointing: recompute blocks in backward
        self.fused_loss = True  # head + loss chunk by chunk (gigagpt.fused_loss); False: the plain path
        for name, p in self.named_parameters():
            init_parameter(name, p, cfg)

    def forward(self, idx, targets=None):
        T = idx.size(1)
        assert T <= self.cfg.block_size, f"sequence {T} > block_size {self.cfg.block_size}"
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T, device=idx.device)))
        for block in self.blocks:
            if self.checkpoint_blocks and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        x, vocab = self.ln_f(x), self.cfg.vocab_size
        if targets is not None and self.fused_loss:  # the weight the module holds now (FSDP: gathered)
            return linear_cross_entropy(x.view(-1, x.size(-1)), self.lm_head.weight, targets.view(-1), vocab=vocab)
        logits = self.lm_head(x)
        if logits.size(-1) > vocab:  # padded ids: no probability, so never a loss term or a sample
            logits = logits[..., :vocab]
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().reshape(-1, vocab), targets.view(-1))

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, eot=None, generator=None,
                 on_token=None):
        """Sample up to max_new_tokens after idx (1, T); stops early at the eot token. on_token
        gets each new token id as it comes (to stream the text)."""
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.cfg.block_size:])[:, -1, :].float()
            if temperature <= 0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits[logits < kth] = float("-inf")
                nxt = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
            if eot is not None and nxt.item() == eot:
                break
            idx = torch.cat((idx, nxt), dim=1)
            if on_token is not None:
                on_token(nxt.item())
        return idx


@torch.no_grad()
def init_parameter(name: str, p: torch.Tensor, cfg: ModelConfig) -> None:
    """Initialise one parameter in place. Sharded training calls this on each full tensor in
    the same order as GPT.__init__, so 1 and N processes start from the same weights."""
    if name.endswith("proj.weight"):  # residual projections: scaled down with depth
        nn.init.normal_(p, 0.0, cfg.init_std / math.sqrt(2 * cfg.n_layer))
    elif name.endswith("weight") and p.dim() >= 2:
        nn.init.normal_(p, 0.0, cfg.init_std)
    elif name.endswith("bias"):
        nn.init.zeros_(p)
    else:  # LayerNorm gains
        nn.init.ones_(p)


def build_on_meta(cfg: ModelConfig) -> GPT:
    """Any preset, 175b included, with no memory: parameters live on the meta device."""
    with torch.device("meta"):
        return GPT(cfg)


def build_model(cfg: ModelConfig, device) -> GPT:
    """Build on meta, materialise on `device`, then initialise parameter by parameter from the
    global seed: the same weights as a sharded build (gigagpt.dist), with no throw-away init."""
    model = build_on_meta(cfg).to_empty(device=device)
    model.lm_head.weight = model.wte.weight  # to_empty gives shared parameters separate storage
    for name, p in model.named_parameters():
        init_parameter(name, p, cfg)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights are yielded once
