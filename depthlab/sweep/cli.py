"""``python -m depthlab [overrides]``: Hydra's command line with depthlab's sugar.

- ``key=a..b`` (inclusive) and ``key=a..b:step`` are depthlab's ranges; they
  become Hydra's ``range(a, b + 1, step)``.
- Every invocation runs as a multirun through depthlab's sweeper, so any sweep
  (ranges, comma lists, ``range()``, ``choice()``, ``glob()``) needs no ``-m``,
  and a plain ``python -m depthlab`` runs one job as a sweep of one.
- ``experiment=NAME`` is accepted for ``+experiment=NAME``.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

_RANGE = re.compile(r"^(?P<key>[\w./@+~-]+)=(?P<value>[^=]*\.\.[^=]*)$")
_NUMBER = r"[+-]?\d+"
_RANGE_VALUE = re.compile(
    rf"^(?P<a>{_NUMBER})\.\.(?P<b>{_NUMBER})(?::(?P<step>{_NUMBER}))?$"
)
# Flags after which the next argument is a value, not an override.
_FLAGS_WITH_VALUE = {
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
    "--info",
    "-i",
}
_NO_MULTIRUN = {
    "--help",
    "-h",
    "--hydra-help",
    "--version",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
    "--resolve",
    "--package",
    "-p",
}


class UsageError(ValueError):
    """A command-line argument is malformed; the message is one line."""


def expand_range(argument: str) -> str:
    """Rewrite ``key=a..b[:step]`` as ``key=range(a,b+1,step)``.

    Raises
    ------
    UsageError
        For a reversed range, a zero or negative step, or non-integer bounds.

    Examples
    --------
    >>> expand_range("depth=2..50")
    'depth=range(2,51,1)'
    >>> expand_range("width=16..64:16")
    'width=range(16,65,16)'
    """
    m = _RANGE.match(argument)
    if not m:
        return argument
    key, value = m.group("key"), m.group("value")
    r = _RANGE_VALUE.match(value.strip())
    if not r:
        raise UsageError(
            f"{key}={value!r} is not a range; use {key}=a..b or {key}=a..b:step "
            f"with integers a <= b and step >= 1"
        )
    a, b = int(r.group("a")), int(r.group("b"))
    step = int(r.group("step") or 1)
    if a > b:
        raise UsageError(f"{key}={value!r} is a reversed range; use {key}={b}..{a}")
    if step < 1:
        raise UsageError(f"{key}={value!r} has step {step}; the step must be >= 1")
    return f"{key}=range({a},{b + 1},{step})"


def rewrite_argv(argv: list[str]) -> list[str]:
    """depthlab's command line -> Hydra's command line (see the module docstring)."""
    out: list[str] = []
    skip_next = False
    multirun = True
    options = _group_options(_user_config_dirs(argv))
    for arg in argv:
        if skip_next:
            out.append(arg)
            skip_next = False
            continue
        if arg in _FLAGS_WITH_VALUE:
            skip_next = True
        if arg.split("=", 1)[0] in _NO_MULTIRUN:
            multirun = False
        if arg.startswith("-"):
            out.append(arg)
            continue
        arg = expand_range(arg)
        if arg.startswith("experiment="):
            arg = "+" + arg
        _precheck(arg, options=options)
        out.append(arg)
    if multirun and not any(a in ("-m", "--multirun") for a in out):
        out.insert(0, "--multirun")
    return out


def _user_config_dirs(argv: list[str]) -> list[str] | None:
    """The user's own config folders (``--config-dir``, ``hydra.searchpath``);
    None where one of them is not a folder depthlab can list (``pkg://``)."""
    dirs: list[str] = []
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(argv[i + 1])
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
        elif arg.startswith("hydra.searchpath="):
            for entry in arg.split("=", 1)[1].strip("[]").split(","):
                entry = entry.strip().strip("'\"")
                if not entry.startswith("file://"):
                    return None
                dirs.append(entry.removeprefix("file://"))
    return dirs


def _group_options(dirs: list[str] | None) -> Callable[[str], list[str]] | None:
    """The options of a config group: depthlab's own and those of ``dirs``
    (None: unknown, left to Hydra)."""
    if dirs is None:
        return None
    from depthlab.sweep.app import CONFIG_PATH

    folders = [Path(CONFIG_PATH), *(Path(d) for d in dirs)]
    return lambda group: sorted(
        {p.stem for folder in folders for p in (folder / group).glob("*.yaml")}
    )


def _precheck(arg: str, *, options: Callable[[str], list[str]] | None) -> None:
    """One-line errors for unknown group options and keys, and bad values.

    The override is parsed by Hydra's own grammar and each of its values checked
    against the schema (:func:`depthlab.sweep.app.check_override`), before Hydra
    composes the config. ``options`` lists a config group's options (None
    leaves them to Hydra).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from depthlab.jobs.schema import ConfigError
    from depthlab.sweep.app import check_override

    if "=" not in arg:
        return
    try:
        override = OverridesParser.create().parse_override(arg)
    except HydraException as err:
        key, value = arg.split("=", 1)
        reason = " ".join(str(err).split())
        raise UsageError(
            f"{key}={value!r} is not an override Hydra reads ({reason})"
        ) from None
    try:
        check_override(override, options)
    except ConfigError as err:
        raise UsageError(str(err)) from None


_SWEEP_FUNCTIONS = re.compile(r"^\s*(range|choice|glob)\(")
_NESTED = re.compile(r"\[[^\[\]]*\]|\{[^{}]*\}|'[^']*'|\"[^\"]*\"")


def likely_parallel(argv: list[str]) -> bool:
    """Whether depthlab's command line ``argv`` (as typed) runs a sweep on
    depthlab's workers: a sweep override (``a..b``, a comma list, ``range()``,
    ``choice()``, ``glob()``), more than one core, and neither ``n_jobs=1``,
    another ``hydra/launcher`` nor a flag that runs no jobs (``--cfg``, ...).

    A guess from the text alone, made before anything is imported: a sweep
    defined in a preset or a config file is not seen (its workers then start
    after composing, as without the guess), and a wrong yes costs one process
    that is ended at exit.

    Examples
    --------
    >>> likely_parallel(["depth=2,3", "n_jobs=1"])
    False
    >>> likely_parallel(["hidden_widths=[2,3]"])
    False
    """
    from depthlab.sweep.workers import cpu_count

    sweeps = False
    for arg in argv:
        if arg.split("=", 1)[0] in _NO_MULTIRUN:
            return False
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key, value = key.lstrip("+~"), value.strip()
        if key == "n_jobs" and value == "1":
            return False
        if key == "hydra/launcher" and value != "basic":
            return False
        while _NESTED.search(value):  # lists, dicts, quoted strings
            value = _NESTED.sub("", value)
        sweeps = sweeps or "," in value or ".." in value
        sweeps = sweeps or bool(_SWEEP_FUNCTIONS.match(value))
    return sweeps and cpu_count() > 1


def main() -> None:
    """Run depthlab's Hydra app with the rewritten command line."""
    if likely_parallel(sys.argv[1:]):
        # Its imports (~2 s) then run beside the command line's checks, Hydra's
        # composing and the store's opening instead of after them; a command
        # that turns out bad or not to use it ends it at exit.
        from depthlab.sweep import workers

        workers.warm_up()
    try:
        argv = rewrite_argv(sys.argv[1:])
    except UsageError as err:
        print(f"depthlab: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.argv = [sys.argv[0], *argv]
    # SIGTERM (a scheduler cancelling the sweep) ends it like Ctrl-C: the runs in
    # flight are marked FAILED / KILLED instead of being left RUNNING.
    from depthlab import interrupts

    interrupts.install()
    try:
        from depthlab import garbage

        with garbage.paused():  # modules: they live as long as the process
            from depthlab.sweep.app import main as app_main

        app_main()
    except KeyboardInterrupt:
        signum = interrupts.received() or signal.SIGINT
        print(
            f"depthlab: interrupted by {signal.Signals(signum).name}; finished jobs "
            f"are kept, and the same command resumes the sweep",
            file=sys.stderr,
        )
        raise SystemExit(128 + signum) from None


def exit_now(status: object = 0) -> NoReturn:
    """Exit with ``status`` without tearing down every loaded module.

    Python's finalization frees mlflow, SQLAlchemy, pandas and matplotlib
    module by module: most of a second per process, for nothing a finished sweep
    needs. This ends the workers' forkserver
    (:func:`depthlab.sweep.workers.stop_forkserver`, which would otherwise
    tear itself down for as long, holding the standard streams), runs the
    ``atexit`` handlers (logging's flush among them) and flushes the standard
    streams, then ends the process. The SQLite store needs
    no closing: every MLflow write is a committed transaction. When another
    non-daemon thread is alive, or ``status`` is not an integer or None, it
    exits the normal way instead (``raise SystemExit(status)``), which waits
    for the thread or prints the message.
    """
    import atexit
    import os
    import threading

    if "depthlab.sweep.workers" in sys.modules:  # a bad store: no job was run
        sys.modules["depthlab.sweep.workers"].discard_prestarted()
    if "depthlab.sweep.tracker" in sys.modules:  # multiprocessing joins it at exit
        sys.modules["depthlab.sweep.tracker"].close()
    alive = [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    if alive or not (status is None or isinstance(status, int)):
        raise SystemExit(status)
    if "depthlab.sweep.workers" in sys.modules:
        sys.modules["depthlab.sweep.workers"].stop_forkserver()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status or 0)


def run() -> NoReturn:
    """The ``depthlab`` command: :func:`main`, then :func:`exit_now`."""
    try:
        main()
    except SystemExit as err:
        exit_now(err.code)
    exit_now(0)


if __name__ == "__main__":
    run()
