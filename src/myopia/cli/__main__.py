"""``python -m myopia.cli``."""

from myopia.cli import main

main()
