"""``python -m livesettings``."""

from .cli import main

main()
