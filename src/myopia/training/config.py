"""One documented record of everything a training run depends on."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from myopia.errors import MyopiaError

# "normal": the full gradient; "kv" / "residual": the exact myopic gradient of that
# definition; "bigram": the transformer-bigram model (each position attends to itself).
GRADIENT_MODES = ("normal", "kv", "residual", "bigram")
SCHEDULES = ("cosine", "constant")
PARALLEL = ("ddp", "fsdp")  # under torchrun: whole copies, or sharded (FSDP2)


@dataclass
class TrainConfig:
    model: str = "fresh-llama"  # any load_model spec; fresh-* for training from scratch
    text: Path | None = None  # text file or folder; None: the default corpus
    gradient: str = "normal"
    seq_len: int = 128
    batch_size: int = 8
    steps: int = 200
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    schedule: str = "cosine"  # after warm-up: cosine decay to 10% of lr, or constant
    seed: int = 0
    eval_every: int = 50  # steps between evaluations (and at the last step)
    eval_batches: int = 4
    checkpoint_every: int = 50  # steps between checkpoints (and at the last step)
    out: Path = Path("myopia-train")
    # Under torchrun: ddp (a whole copy per process) or fsdp (sharded, FSDP2). Not a
    # setting the weights depend on: a checkpoint continues under either, or neither.
    parallel: str = "ddp"

    def __post_init__(self):
        if self.gradient not in GRADIENT_MODES:
            raise MyopiaError(
                f"unknown gradient mode {self.gradient!r}: choose one of "
                f"{', '.join(GRADIENT_MODES)}"
            )
        if self.parallel not in PARALLEL:
            raise MyopiaError(
                f"unknown parallel {self.parallel!r}: choose one of {', '.join(PARALLEL)}"
            )
        if self.schedule not in SCHEDULES:
            raise MyopiaError(
                f"unknown schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}"
            )
        for name in (
            "seq_len",
            "batch_size",
            "steps",
            "eval_every",
            "eval_batches",
            "checkpoint_every",
        ):
            if getattr(self, name) < 1:
                raise MyopiaError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.seq_len < 2:
            raise MyopiaError("seq_len must be at least 2 (a token and its successor)")
        self.out = Path(self.out)
        self.text = Path(self.text) if self.text is not None else None

    def to_dict(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
