"""``python -m proxy``: the ``schoolgate`` command (how ``--workers`` starts each worker)."""

from proxy.cli import main

main()
