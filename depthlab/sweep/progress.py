"""A sweep's progress: one live line on a terminal, one line per job elsewhere.

On a terminal (standard output is a TTY) a sweep shows, once it has run for
:data:`LIVE_AFTER_S` seconds, one line that it rewrites in place (tqdm)::

    depthlab: 17/49 jobs done, 0 failed, 3 skipped [00:09<00:17]

with the elapsed time and an estimate of the time left. Without a terminal (CI
logs, a file, a pipe) it prints one line per job as the job ends, with the
job's index in the sweep, as ``[ 7/49] L=8 sigmoid gaussian sw=1 n=64  ...``.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

LIVE_AFTER_S = 3.0
"""A sweep shorter than this never shows the live line."""

REFRESH_S = 0.2
"""The live line is redrawn at most this often."""


def is_terminal(stream: TextIO) -> bool:
    """True if ``stream`` is a TTY."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """What a sweep prints while its jobs run.

    Parameters
    ----------
    to_run : int
        The jobs this process runs.
    total : int
        The jobs of the sweep (the ``N`` of ``[i/N]``).
    skipped : int
        Jobs skipped because they already FINISHED.
    live : bool, optional
        Show the live line (default: when standard output is a terminal).
    stream : file, optional
        Where to write (default: standard output).
    """

    def __init__(
        self,
        to_run: int,
        total: int,
        skipped: int = 0,
        *,
        live: bool | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.stream = stream or sys.stdout
        self.total = total
        self.skipped = skipped
        self.done = 0
        self.failed = 0
        self.live = is_terminal(self.stream) if live is None else live
        self._bar: Any = None
        if self.live:
            from tqdm import tqdm

            self._bar = tqdm(
                total=to_run,
                desc=self._description(to_run),
                file=self.stream,
                delay=LIVE_AFTER_S,
                mininterval=REFRESH_S,
                dynamic_ncols=True,
                leave=False,
                bar_format="{desc} [{elapsed}<{remaining}]",
            )

    def _description(self, to_run: int) -> str:
        return (
            f"depthlab: {self.done}/{to_run} jobs done, {self.failed} failed, "
            f"{self.skipped} skipped"
        )

    def _describe(self) -> None:
        self._bar.set_description_str(self._description(self._bar.total), refresh=False)

    def job_done(self, index: int, line: str) -> None:
        """A job ended: ``index`` is its 0-based index in the sweep, ``line``
        what the job reports about itself."""
        self.done += 1
        self._emit(index, line)

    def job_failed(self, index: int, error: str) -> None:
        """A job failed with ``error`` (one line)."""
        self.failed += 1
        self._emit(index, f"FAILED {error}")

    def _emit(self, index: int, text: str) -> None:
        if self._bar is not None:
            self._describe()
            self._bar.update(1)
            return
        width = len(str(self.total))
        print(
            f"[{index + 1:>{width}}/{self.total}] {text}", file=self.stream, flush=True
        )

    def close(self) -> None:
        """Remove the live line (the summary follows it)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
