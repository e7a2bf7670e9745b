"""``python -m depthlab``: the command line (:mod:`depthlab.sweep.cli`)."""

from depthlab.sweep.cli import run

if __name__ == "__main__":
    run()
