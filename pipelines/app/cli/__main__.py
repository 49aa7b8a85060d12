"""``python -m pipelines.app.cli``: the same as the ``alphaops`` script."""

from pipelines.app.cli import main

main()
