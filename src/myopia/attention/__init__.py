"""Myopic attention: the functions, their registration and the switch (the brute-force
reference they are tested against is ``myopia.gradients.reference``)."""

from myopia.attention.functions import MODES
from myopia.attention.switch import (
    BACKENDS,
    current_mode,
    implementation_name,
    myopic,
    register,
    set_myopic,
)

register()

__all__ = ["BACKENDS", "MODES", "current_mode", "implementation_name", "myopic", "set_myopic"]
