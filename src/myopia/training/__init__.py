"""Training small models with the ordinary or a myopic gradient (see ``loop.train``)."""

from myopia.training.config import GRADIENT_MODES, TrainConfig
from myopia.training.loop import TrainResult, train

__all__ = ["GRADIENT_MODES", "TrainConfig", "TrainResult", "train"]
