"""``python -m saliencykit``: the ``saliencykit`` command (see :mod:`saliencykit.cli`)."""

from saliencykit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
