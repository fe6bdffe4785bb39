"""``python -m gitml``: the ``gitml`` command (what the git hooks run)."""

from gitml.cli.main import main

main()
