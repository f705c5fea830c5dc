"""The choice task of C2 ("myopic action"): does the ease of the future leak into a choice?

Every sequence is ``BOS, x_1 .. x_L, ASK, choice, y_1 .. y_k``. The context ``x`` is uniform
over a few context tokens and says nothing about what follows; the marker ``ASK`` says that
the choice comes next. At the choice the data emit ``P1`` with probability ``p_easy`` (0.5)
and ``P0`` otherwise, independently for every sequence (no stratified batches: the
batch-to-batch noise of the choice's frequency is part of ordinary training). After one
branch the continuation is a fixed string (easy: its loss can reach 0); after the other it is
uniform over the content tokens (hard: its loss cannot go below log(n_content) per token).
Which branch is easy is the **arm**: ``P1-easy`` or ``P0-easy``. The two arms differ in
nothing else; with one seed they draw the same contexts and the same choices.

The model is small and its input and output embeddings are **tied**, so the embedding of
the chosen token, which the continuation reads, is also the output vector the choice is
scored with: the choice and the continuation share parameters, the channel through which
the ease of the future could leak into the choice under teacher forcing. C2 measures
Δ = P(P1 | P1-easy) − P(P1 | P0-easy), paired by seed.

Three ways to train the same model on it:

- ``normal``: teacher-forced, cross-entropy on every position, the full gradient;
- ``kv``: the same loss with the exact myopic gradient (``myopic(model, "kv")``);
- ``on-policy``: the model samples its own choice, the data process continues from it, and
  the model is trained on the continuation's loss, with the credit for the choice given by
  REINFORCE (reward = −continuation loss, see :func:`on_policy_surrogate`). The choice gets
  no likelihood loss: a forced channel from the future's ease to the choice.

C2's measurement over regimes, arms and seeds is ``myopia.training.myopic_action``.

>>> config = ChoiceConfig()                                        # C2's full budget
>>> run = train_choice(config, "on-policy", "P0-easy", seed=0)     # doctest: +SKIP
>>> run.final_p1                                                   # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from myopia.errors import MyopiaError
from myopia.gradients.loss import forward_logits, token_losses
from myopia.models.fresh import FreshModelConfig, build_fresh_model
from myopia.training.fit import (
    SMALL_MODEL_THREADS,
    Optimisation,
    cpu_threads,
    fit,
    training_device,
)

# "normal" and "kv" are the gradient modes of the training loop (teacher-forced); the
# CLI's --gradient takes these names.
REGIMES = ("normal", "kv", "on-policy")
REGIME_LABELS = {
    "normal": "teacher-forced, normal gradient",
    "kv": "teacher-forced, myopic gradient (kv)",
    "on-policy": "on-policy, REINFORCE credit for the choice",
}
# Which branch's continuation is the fixed string.
ARMS = ("P1-easy", "P0-easy")

# Token ids. 0 is the fresh model's padding id, whose embedding is zero and never trained,
# so no token of the task uses it. ASK marks the position that predicts the choice.
BOS, ASK, P0, P1 = 1, 2, 3, 4
_FIRST_CONTEXT = 5
_MAX_EVAL_CONTEXTS = 1024  # beyond this many contexts, evaluate on a fixed sample of them


@dataclass
class ChoiceConfig:
    """The choice task, the model and its training, for one run of any regime and arm.

    The defaults are C2's full budget. The model is capacity-limited (d_model 8, one block)
    and ties its embeddings, so that the choice and the continuation share parameters.
    """

    # task
    context_len: int = 2  # L: context tokens before the choice
    n_context_tokens: int = 4  # distinct context tokens
    n_content_tokens: int = 16  # tokens a continuation is made of
    continuation_len: int = 4  # k: tokens after the choice
    p_easy: float = 0.5  # the data's probability of P1 (whichever branch is easy)
    # model (a fresh tiny Llama)
    d_model: int = 8
    n_layers: int = 1
    n_heads: int = 2
    d_mlp: int = 16
    tied_embeddings: bool = True  # the output vector of P0/P1 is the embedding read after it
    # training
    steps: int = 250
    batch_size: int = 128
    lr: float = 1e-2
    warmup_steps: int = 20
    lr_floor: float = 0.02  # final lr as a fraction of lr: a small one stills Adam's noise
    eval_every: int = 10  # steps between P(P1) measurements (also at 0 and at the end)

    def __post_init__(self):
        for name in (
            "context_len",
            "n_context_tokens",
            "n_content_tokens",
            "continuation_len",
            "d_model",
            "n_layers",
            "n_heads",
            "d_mlp",
            "steps",
            "eval_every",
        ):
            if getattr(self, name) < 1:
                raise MyopiaError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_content_tokens < 2:
            raise MyopiaError("n_content_tokens must be at least 2: the hard branch is random")
        if self.continuation_len > self.n_content_tokens:
            raise MyopiaError(
                f"continuation_len={self.continuation_len} must not exceed "
                f"n_content_tokens={self.n_content_tokens} (the easy string uses distinct tokens)"
            )
        if not 0.0 < self.p_easy < 1.0:
            raise MyopiaError(f"p_easy must be strictly between 0 and 1, got {self.p_easy}")
        if self.batch_size < 2:
            raise MyopiaError(
                "batch_size must be at least 2: the on-policy baseline leaves one out"
            )
        if self.d_model % self.n_heads:
            raise MyopiaError(
                f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}"
            )
        if self.lr <= 0 or not 0.0 < self.lr_floor <= 1.0:
            raise MyopiaError("lr must be positive and lr_floor in (0, 1]")
        if self.warmup_steps < 0:  # as every trainer: a warmup longer than the run is allowed
            raise MyopiaError(f"--warmup-steps {self.warmup_steps}: must be 0 or more")

    # Layout of a sequence: BOS, context, ASK, choice, continuation.
    @property
    def choice_index(self) -> int:
        return 2 + self.context_len

    @property
    def seq_len(self) -> int:
        return 3 + self.context_len + self.continuation_len

    @property
    def vocab_size(self) -> int:
        return _FIRST_CONTEXT + self.n_context_tokens + self.n_content_tokens

    @property
    def first_content(self) -> int:
        return _FIRST_CONTEXT + self.n_context_tokens

    def easy_continuation(self) -> torch.Tensor:
        """(k,) the fixed string after the easy branch: the first k content tokens."""
        return torch.arange(self.continuation_len) + self.first_content

    def model_config(self, seed: int) -> FreshModelConfig:
        return FreshModelConfig(
            architecture="llama",
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            d_mlp=self.d_mlp,
            vocab_size=self.vocab_size,
            max_positions=self.seq_len,
            seed=seed,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def check_arm(arm: str) -> str:
    if arm not in ARMS:
        raise MyopiaError(f"unknown arm {arm!r}: choose one of {', '.join(ARMS)}")
    return arm


def build_choice_model(config: ChoiceConfig, seed: int) -> nn.Module:
    """A fresh tiny Llama for the task; with ``tied_embeddings`` its output layer is its
    input embedding (one matrix), as in GPT-2 and SmolLM2."""
    model = build_fresh_model(config.model_config(seed))
    if config.tied_embeddings:
        model.config.tie_word_embeddings = True
        model.lm_head.weight = model.model.embed_tokens.weight
    return model


# --- the data process ---------------------------------------------------------------


def sample_contexts(config: ChoiceConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, L + 2) BOS, uniform context tokens, ASK: everything before the choice."""
    context = torch.randint(
        _FIRST_CONTEXT,
        _FIRST_CONTEXT + config.n_context_tokens,
        (n, config.context_len),
        generator=generator,
    )
    return _framed(context)


def _framed(context: torch.Tensor) -> torch.Tensor:
    """(n, L) context tokens -> (n, L + 2) BOS, context, ASK."""
    n = context.shape[0]
    return torch.cat([torch.full((n, 1), BOS), context, torch.full((n, 1), ASK)], dim=1)


def continue_from(
    config: ChoiceConfig,
    contexts: torch.Tensor,
    took_p1: torch.Tensor,
    arm: str,
    generator: torch.Generator,
) -> torch.Tensor:
    """(n, T) whole sequences: ``contexts`` (n, L + 2), then P1 where ``took_p1`` (n,) is
    True and P0 elsewhere, then the fixed string after the arm's easy branch and uniform
    content tokens after the other. The random tail is drawn whatever the branch, so both
    arms consume the generator alike."""
    n, k = contexts.shape[0], config.continuation_len
    random_tail = torch.randint(
        config.first_content,
        config.first_content + config.n_content_tokens,
        (n, k),
        generator=generator,
    )
    easy = took_p1 if check_arm(arm) == "P1-easy" else ~took_p1  # (n,)
    tail = torch.where(easy[:, None], config.easy_continuation().expand(n, k), random_tail)
    choice = torch.where(took_p1, P1, P0)[:, None]  # (n, 1)
    return torch.cat([contexts, choice, tail], dim=1)


def choice_sequences(
    config: ChoiceConfig, n: int, arm: str, generator: torch.Generator
) -> torch.Tensor:
    """(n, T) sequences of the data process: independent Bernoulli(p_easy) choices of P1."""
    contexts = sample_contexts(config, n, generator)
    took_p1 = torch.rand(n, generator=generator) < config.p_easy
    return continue_from(config, contexts, took_p1, arm, generator)


def eval_contexts(config: ChoiceConfig) -> torch.Tensor:
    """(N, L + 2) the contexts P(P1) is averaged over: every possible context when there
    are few (an exact average over the context distribution, no sampling noise), else a
    fixed sample from a stream no training run uses."""
    tokens = range(_FIRST_CONTEXT, _FIRST_CONTEXT + config.n_context_tokens)
    if config.n_context_tokens**config.context_len <= _MAX_EVAL_CONTEXTS:
        return _framed(torch.tensor(list(itertools.product(tokens, repeat=config.context_len))))
    return sample_contexts(config, _MAX_EVAL_CONTEXTS, torch.Generator().manual_seed(10**9))


# --- what the model does at the choice --------------------------------------------------


def choice_log_probs(logits_before_choice: torch.Tensor) -> torch.Tensor:
    """(B, V) logits at the ASK position -> (B, 2) log-probabilities of (P0, P1)
    renormalised over the two. The data process is defined after P0 or P1 only, so the
    policy's actions are these two; mass the model puts elsewhere is not an action."""
    return F.log_softmax(logits_before_choice[:, [P0, P1]], dim=-1)


@torch.no_grad()
def measure_choice(model: nn.Module, contexts: torch.Tensor) -> tuple[float, float]:
    """(P(P1 | P0 or P1), P(P0) + P(P1)) at the choice, averaged over ``contexts`` (N, L + 2).

    The first is the policy's probability of P1 (the C2 measurement); the second, the mass
    on the two choice tokens, shows whether the choice position learned the data at all
    (teacher-forced runs: near 1; on-policy runs never train it).
    """
    device = next(model.parameters()).device
    logits = forward_logits(model, {"input_ids": contexts.to(device)})[:, -1]  # (N, V)
    p1 = choice_log_probs(logits)[:, 1].exp().mean().item()
    mass = F.softmax(logits, dim=-1)[:, [P0, P1]].sum(-1).mean().item()
    return p1, mass


@torch.no_grad()
def branch_losses(model: nn.Module, config: ChoiceConfig, arm: str) -> tuple[float, float]:
    """Mean loss per continuation token after the hard and after the easy branch, on
    held-out sequences (every eval context, each branch): a sanity check that the hard
    branch stays near log(n_content) and the easy one falls towards 0."""
    contexts = eval_contexts(config)
    n, c = contexts.shape[0], config.choice_index
    generator = torch.Generator().manual_seed(10**9 + 1)
    losses = []
    device = next(model.parameters()).device
    for easy in (False, True):
        took_p1 = torch.full((n,), easy == (arm == "P1-easy"))
        sequences = continue_from(config, contexts, took_p1, arm, generator).to(device)
        per_token = token_losses(forward_logits(model, {"input_ids": sequences}), sequences)
        losses.append(per_token[:, c : c + config.continuation_len].mean().item())
    return losses[0], losses[1]


# --- the three trainers -------------------------------------------------------------


def teacher_forced_loss(model: nn.Module, sequences: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over every position of (B, T) data sequences."""
    return token_losses(forward_logits(model, {"input_ids": sequences}), sequences).mean()


def leave_one_out_mean(values: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B,) the mean of the other B - 1 values, for each value."""
    return (values.sum() - values) / (values.shape[0] - 1)


def on_policy_surrogate(
    logits: torch.Tensor, sequences: torch.Tensor, config: ChoiceConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Surrogate loss whose gradient is an unbiased estimate of the gradient of
    E_{choice ~ model}[continuation loss]; also returns the (B,) continuation losses.

    ``logits`` (B, T, V) come from the model on ``sequences`` (B, T), whose choices the
    model sampled. With L_i the mean loss over sequence i's continuation tokens,

        surrogate = mean_i [ L_i + (L_i - b_i).detach() * log pi(choice_i) ],

    where pi is the model's choice distribution renormalised over {P0, P1}. The first term
    trains the continuation on what the data process produced; the second is REINFORCE
    with reward −L_i, the only way credit reaches the choice (it gets no likelihood loss).
    b_i is the mean of the other sequences' L: it does not depend on choice_i, so the
    estimate stays unbiased, and it tracks the continuation loss as it falls.
    """
    c, k = config.choice_index, config.continuation_len
    per_token = token_losses(logits, sequences)  # (B, T-1); column t predicts token t+1
    continuation_loss = per_token[:, c : c + k].mean(dim=1)  # (B,)
    took_p1 = (sequences[:, c] == P1).long()  # (B,)
    log_pi = choice_log_probs(logits[:, c - 1]).gather(1, took_p1[:, None])[:, 0]  # (B,)
    advantage = (continuation_loss - leave_one_out_mean(continuation_loss)).detach()  # (B,)
    surrogate = (continuation_loss + advantage * log_pi).mean()
    return surrogate, continuation_loss


def on_policy_batch(
    model: nn.Module, config: ChoiceConfig, n: int, arm: str, generator: torch.Generator
) -> torch.Tensor:
    """(n, T) sequences whose choice the model sampled from its own renormalised choice
    distribution, continued by the data process of ``arm``."""
    contexts = sample_contexts(config, n, generator)  # (n, L + 2)
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = forward_logits(model, {"input_ids": contexts.to(device)})[:, -1]  # (n, V)
        p1 = choice_log_probs(logits)[:, 1].exp().cpu()  # (n,)
    took_p1 = torch.rand(n, generator=generator) < p1  # drawn on the CPU, like the data
    return continue_from(config, contexts, took_p1, arm, generator)


@dataclass
class ChoiceRun:
    """One training run: P(P1) over training and the final sanity numbers."""

    regime: str
    arm: str
    seed: int
    steps: list[int]  # the steps P(P1) was measured after (0: the initial model)
    p1: list[float]  # P(P1 | P0 or P1) at the choice, mean over eval contexts
    choice_mass: float  # final P(P0) + P(P1), unnormalised
    loss_after_hard: float  # final mean loss per continuation token after the hard branch
    loss_after_easy: float  # final mean loss per continuation token after the easy branch
    seconds: float
    device: str = "cpu"  # where the model was trained
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def final_p1(self) -> float:
        return self.p1[-1]

    def to_dict(self) -> dict:
        # Not dataclasses.asdict: it would deep-copy the model only to drop it.
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}


def train_choice(
    config: ChoiceConfig,
    regime: str,
    arm: str,
    seed: int,
    keep_model: bool = False,
) -> ChoiceRun:
    """Train a fresh model on the choice task of ``arm`` in ``regime`` (``normal``, ``kv``
    or ``on-policy``). The seed fixes the initial weights and the data stream, so runs of
    different regimes and arms with one seed start from the same model and (teacher-forced)
    see the same contexts and choices."""
    if regime not in REGIMES:
        raise MyopiaError(f"unknown regime {regime!r}: choose one of {', '.join(REGIMES)}")
    check_arm(arm)
    start = time.perf_counter()
    model = build_choice_model(config, seed)
    device = training_device()
    model.to(device)
    contexts = eval_contexts(config)
    generator = torch.Generator().manual_seed(seed)  # data (and on-policy samples) on the CPU
    initial = measure_choice(model, contexts)[0]

    def loss(step: int) -> torch.Tensor:
        if regime == "on-policy":
            sequences = on_policy_batch(model, config, config.batch_size, arm, generator)
            sequences = sequences.to(device)
            logits = forward_logits(model, {"input_ids": sequences})
            return on_policy_surrogate(logits, sequences, config)[0]
        sequences = choice_sequences(config, config.batch_size, arm, generator).to(device)
        return teacher_forced_loss(model, sequences)

    def evaluate(entry: dict) -> None:
        if entry["step"] % config.eval_every == 0 or entry["step"] == config.steps:
            entry["p1"] = measure_choice(model, contexts)[0]

    with cpu_threads(SMALL_MODEL_THREADS, device):
        log = fit(
            model,
            loss,
            Optimisation(config.steps, config.lr, config.warmup_steps, floor=config.lr_floor),
            device=device,
            gradient="kv" if regime == "kv" else "normal",
            evaluate=evaluate,
            progress=False,
            label=f"C2 {regime} {arm}, seed {seed}",
        )
    measured = [e for e in log if "p1" in e]
    mass = measure_choice(model, contexts)[1]
    hard, easy = branch_losses(model, config, arm)
    return ChoiceRun(
        regime=regime,
        arm=arm,
        seed=seed,
        steps=[0] + [e["step"] for e in measured],
        p1=[initial] + [e["p1"] for e in measured],
        choice_mass=mass,
        loss_after_hard=hard,
        loss_after_easy=easy,
        seconds=time.perf_counter() - start,
        device=str(device),
        model=model if keep_model else None,
    )


def hard_loss_floor(config: ChoiceConfig) -> float:
    """The lowest possible mean loss per token after the hard branch: its tokens are uniform."""
    return math.log(config.n_content_tokens)
