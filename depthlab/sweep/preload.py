"""The workers' forkserver's first import (:func:`depthlab.sweep.workers._context`):
:data:`depthlab.sweep.workers.PRELOAD` with the garbage collector paused, then
frozen (:mod:`depthlab.garbage`).

Imports make objects that live as long as the process (modules, classes,
functions), and the collector's full passes during them walk everything loaded
so far and free nothing. Frozen in the forkserver, all of it stays out of the
passes of the processes forked from it (the workers, the tracker), which
therefore never touch (and copy) the pages it shares with them. Imported
anywhere else (a test's collection), it only imports.
"""

import contextlib
import gc
import importlib
import sys

from depthlab import garbage
from depthlab.sweep.workers import PRELOAD

with garbage.paused():
    for _name in PRELOAD:
        importlib.import_module(_name)
    # Found once here, MLflow's newest schema revision is inherited by the
    # tracker and the workers, which check every store they open against it
    # (an error is left for the first store call to say).
    with contextlib.suppress(Exception):
        importlib.import_module("depthlab.tracking.template").head_revision()
# multiprocessing starts the forkserver as `python -c "from
# multiprocessing.forkserver import main; main(...)"`.
if sys.argv[:1] == ["-c"] and "multiprocessing.forkserver" in sys.modules:
    gc.freeze()
