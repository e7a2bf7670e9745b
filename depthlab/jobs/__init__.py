"""Jobs: every config key named once (:mod:`~depthlab.jobs.schema`), the one
validator (:mod:`~depthlab.jobs.validate`), and the two jobs, a config in and
tidy tables out with no I/O: the streaming probe (:mod:`~depthlab.jobs.probe`,
:mod:`~depthlab.jobs.engine`, :mod:`~depthlab.jobs.memory`) and training
(:mod:`~depthlab.jobs.train`). Nothing here imports Hydra or MLflow."""

THREADS_ENV = "DEPTHLAB_JOB_THREADS"
"""The environment variable a sweep's worker sets to its job's thread budget
(cores // workers, :mod:`depthlab.sweep.workers`); read by
:func:`depthlab.jobs.engine.default_threads`."""
