"""Training small models with the ordinary or a myopic gradient. Every trainer (text:
``loop.train``; the synthetic tasks) goes through the one loop, ``myopia.training.fit``."""

from myopia.training.config import GRADIENT_MODES, TrainConfig
from myopia.training.loop import TrainResult, train

__all__ = ["GRADIENT_MODES", "TrainConfig", "TrainResult", "train"]
