"""``python -m depthlab.report``: rebuild a sweep's report from MLflow alone.

Usage::

    python -m depthlab.report [--tracking-uri URI] [--experiment NAME]
                              [--run PARENT_RUN_ID] [--out DIR]

Defaults: the SQLite store ``mlflow.db`` in the current directory, experiment
``depthlab``, its latest sweep, and ``./report/``. Prints the path of
``report.html``; a missing store, experiment or run, or an output directory
that cannot be written, is a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m depthlab.report",
        description="Rebuild the report of a depthlab sweep from MLflow alone.",
    )
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)",
    )
    parser.add_argument(
        "--experiment",
        default="depthlab",
        help="experiment to take the latest sweep from (default: depthlab)",
    )
    parser.add_argument(
        "--run", help="the sweep's parent run id (default: the latest sweep)"
    )
    parser.add_argument(
        "--out", default="report", help="output directory (default: ./report)"
    )
    return parser


def _error(message: str) -> int:
    print(f"depthlab.report: error: {message}", file=sys.stderr, flush=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    from depthlab import tracking

    uri = tracking.resolve_uri(args.tracking_uri)
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            return _error(
                f"no tracking store at {path} (run a sweep here first, or pass "
                "--tracking-uri)"
            )
    try:
        tracking.check_store(uri)
        run_id = args.run or tracking.latest_sweep_id(uri, args.experiment)
        from depthlab.report import build_report_from_mlflow

        report = build_report_from_mlflow(uri, run_id, out_dir=Path(args.out))
    except tracking.TrackingError as err:
        return _error(str(err))
    except OSError as err:
        return _error(f"cannot write the report to {args.out}: {err}")
    print(report.resolve(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
