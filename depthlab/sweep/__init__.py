"""Sweeps: the only package that imports Hydra. The command line
(:mod:`~depthlab.sweep.cli`), the Hydra app and sweeper logic
(:mod:`~depthlab.sweep.app`, :mod:`~depthlab.sweep.compose`), the worker
processes (:mod:`~depthlab.sweep.workers`), the progress line and the signal
handling (:mod:`~depthlab.interrupts`)."""
