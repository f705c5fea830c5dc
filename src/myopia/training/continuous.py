"""Continuous-input tasks: a linear embedding in, a transformer, a linear read-out, Huber loss.

The pre-caching task of Wu, Morris and Levine (2024): inputs (x_n, z_n), x_n ~ N(0, 1),
z_n ~ Bernoulli(p); target y_n = z_n * sum_{i=1..10} sin(10 x_{n-i}) + (1 - z_n) * x_n,
with x = 0 before the start. Predicting y_n well needs sin(10 x_s) computed at earlier
positions s for later use: exactly what the myopic gradient does not reward.
``lags=0`` gives the control task y_n = z_n sin(10 x_n) + (1 - z_n) x_n, where nothing at
earlier positions helps.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2Model

from myopia.attention import myopic
from myopia.errors import MyopiaError
from myopia.training.schedule import lr_factor


@dataclass
class PrecachingConfig:
    p: float = 1.0  # probability that a position's target is the sum over earlier inputs
    lags: int = 10  # earlier inputs summed; 0: the target depends on the current input only
    seq_len: int = 64
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 2
    batch_size: int = 32
    steps: int = 1000
    lr: float = 2e-3
    warmup_steps: int = 50
    gradient: str = "normal"  # normal, kv or residual
    seed: int = 0
    eval_batches: int = 8

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise MyopiaError(f"p must be a probability, got {self.p}")
        if self.gradient not in ("normal", "kv", "residual"):
            raise MyopiaError(f"gradient must be normal, kv or residual, not {self.gradient!r}")


def precaching_batch(config: PrecachingConfig, generator: torch.Generator):
    """Inputs (B, T, 2) = (x, z) and targets (B, T)."""
    shape = (config.batch_size, config.seq_len)
    x = torch.randn(shape, generator=generator)
    z = (torch.rand(shape, generator=generator) < config.p).float()
    sines = torch.sin(10 * x)
    if config.lags == 0:
        remembered = sines
    else:
        padded = F.pad(sines, (config.lags, 0))  # zeros before the start
        # sum_{i=1..lags} sin(10 x_{n-i}) for every n
        remembered = sum(
            padded[:, config.lags - i : config.lags - i + config.seq_len]
            for i in range(1, config.lags + 1)
        )
    return torch.stack([x, z], dim=-1), z * remembered + (1 - z) * x


class ContinuousModel(nn.Module):
    """Linear embedding -> GPT-2 blocks (learned positions, no token embedding) -> linear."""

    def __init__(self, config: PrecachingConfig, n_inputs: int = 2):
        super().__init__()
        gpt2 = GPT2Config(
            n_embd=config.d_model,
            n_layer=config.n_layers,
            n_head=config.n_heads,
            n_positions=config.seq_len,
            vocab_size=1,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=0,
            eos_token_id=0,
        )
        self.embed = nn.Linear(n_inputs, config.d_model)
        self.backbone = GPT2Model(gpt2)
        self.readout = nn.Linear(config.d_model, 1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:  # (B, T, n_inputs) -> (B, T)
        hidden = self.backbone(inputs_embeds=self.embed(inputs), use_cache=False)
        return self.readout(hidden.last_hidden_state).squeeze(-1)


@dataclass
class PrecachingRun:
    config: dict
    eval_loss: float  # Huber loss on held-out batches, with the ordinary forward pass
    curve: list[tuple[int, float]]  # (step, training loss)


def train_precaching(config: PrecachingConfig) -> PrecachingRun:
    """Train one model on the task with the configured gradient; return its eval loss."""
    torch.manual_seed(config.seed)
    model = ContinuousModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)

    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor(config.warmup_steps, config.steps, floor=0.05)
    )
    data = torch.Generator().manual_seed(config.seed)
    curve = []
    mode = None if config.gradient == "normal" else config.gradient
    with myopic(model.backbone, mode) if mode else nullcontext():
        for step in range(config.steps):
            inputs, targets = precaching_batch(config, data)
            loss = F.huber_loss(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if step % 25 == 0 or step + 1 == config.steps:
                curve.append((step + 1, loss.item()))
    # Held-out data from a stream no training run sees; forward values are ordinary.
    held_out = torch.Generator().manual_seed(10**9 + config.seed)
    with torch.no_grad():
        losses = [
            F.huber_loss(model(i), t).item()
            for i, t in (precaching_batch(config, held_out) for _ in range(config.eval_batches))
        ]
    return PrecachingRun(config=asdict(config), eval_loss=sum(losses) / len(losses), curve=curve)
