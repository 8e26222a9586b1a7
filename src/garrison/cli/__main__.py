"""``python -m garrison.cli``: the same as the ``garrison`` command."""

from garrison.cli.main import main

main()
