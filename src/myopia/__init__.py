"""myopia: measure what autoregressive transformers compute for the future."""

from myopia.attention import MODES, myopic, set_myopic
from myopia.errors import MyopiaError
from myopia.gradients.loss import mean_token_loss

__version__ = "0.1.0"

__all__ = ["MODES", "MyopiaError", "mean_token_loss", "myopic", "set_myopic"]
