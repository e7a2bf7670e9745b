"""depthlab's performance benchmark: against PyTorch and JAX, and the machine.

Usage (from the repository root, with the ``bench`` extra installed)::

    python experiments/benchmark/run.py                      # everything
    python experiments/benchmark/run.py --quick              # a smaller grid
    python experiments/benchmark/run.py --sections kernel,networks
    python experiments/benchmark/run.py --update-readme      # refresh README.md

Sections: ``kernel`` (input gradient against torch and JAX, fraction of the
matmul peak; issue 9's table against torch's sum trick at 1 and 2 threads),
``networks`` (K networks at once against a loop), ``spectra``
(depthlab.spectra against plain SVDs, and per (pair, layer) against LAPACK at
width 1024), ``sweep`` (``python -m depthlab depth=2..50`` and where its time
goes), ``baseline`` (against the script a researcher would write; 2 cores
against 1), ``scaling`` (fitted exponents of a probe job's cost; bit
generators; issue 9's wide and deep jobs against their floor, with peak
memory). The markdown goes to stdout and ``results.md``, the raw numbers to
``results.json`` (both next to this file, ignored by git); ``--update-readme``
also replaces the results block of ``README.md``.

Every library gets the same number of threads (``--threads``, default 1: one
job per core, as depthlab's sweeps run); ``--threads 0`` leaves each library's
own default (numpy's BLAS and torch one thread per core, XLA its own pool).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTIONS = ("kernel", "networks", "spectra", "sweep", "baseline", "scaling")
BEGIN = "<!-- results: begin (written by run.py --update-readme) -->"
END = "<!-- results: end -->"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Sections: " + ", ".join(SECTIONS),
    )
    p.add_argument("--quick", action="store_true", help="a smaller grid, fewer rounds")
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help="comma-separated sections to run (default: all)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for every library (default 1; 0: each library's default)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="rounds of the baseline section (default 2, 1 with --quick)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=HERE,
        help="directory for results.md and results.json (default: this folder)",
    )
    p.add_argument(
        "--update-readme",
        action="store_true",
        help="replace the results block of experiments/benchmark/README.md",
    )
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        p.error(
            f"unknown section(s) {', '.join(unknown)}; valid: {', '.join(SECTIONS)}"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected sections; print and write their tables."""
    args = parse_args(argv)
    # XLA reads its flags and sizes its threads when jax is imported;
    # threadpoolctl sees only the BLAS libraries loaded so far, so the limits
    # come after every import.
    import peers

    peers.pin(args.threads or None)
    import baseline
    import common
    import kernels
    import spectra_bench
    import sweep

    for why in (peers.torch_available(), peers.jax_available()):
        if why:
            print(f"note: {why}; its columns are skipped", flush=True)
    peers.limit_threads(args.threads or None)
    info = common.machine_info()
    funcs = {
        "kernel": kernels.kernel,
        "networks": kernels.networks,
        "spectra": spectra_bench.spectra_section,
        "sweep": sweep.sweep_section,
        "baseline": baseline.baseline_section,
        "scaling": sweep.scaling,
    }
    titles = {
        "kernel": "Kernel: the input gradient of a batch",
        "networks": "Many networks at once",
        "spectra": "Spectra",
        "sweep": "Sweep: `python -m depthlab depth=2..50`",
        "baseline": "Baseline: the researcher's script; 2 cores against 1",
        "scaling": "Scaling of a probe job",
    }
    command = "python experiments/benchmark/run.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    threads = (
        f"{args.threads} CPU(s) and thread(s) for every library (CPU affinity; "
        f"BLAS via threadpoolctl, torch.set_num_threads, XLA_FLAGS)"
        if args.threads
        else "each library's default threads"
    )
    parts = [
        f"Command: `{command.strip()}`{' (quick mode)' if args.quick else ''}; "
        f"{threads}.",
        "",
        "Machine:",
        "",
        common.machine_markdown(info),
    ]
    results: dict[str, object] = {
        "machine": info,
        "command": command,
        "args": {
            "quick": args.quick,
            "threads": args.threads,
            "sections": args.sections,
        },
    }
    tic = time.perf_counter()
    sections_md: dict[str, str] = {}
    for name in args.sections:
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        md, data = funcs[name](args)
        seconds = time.perf_counter() - t0
        sections_md[name] = f"{md}\n\n*({seconds:.0f} s)*"
        parts += ["", f"### {titles[name]}", "", sections_md[name]]
        results[name] = data
    total = time.perf_counter() - tic
    parts += ["", f"Whole run: {total:.0f} s."]
    markdown = "\n".join(parts) + "\n"
    print()
    print(markdown)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(markdown)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    if args.update_readme:
        readme = HERE / "README.md"
        text = readme.read_text()
        if BEGIN not in text or END not in text:
            print(
                f"README.md has no results block ({BEGIN} ... {END})", file=sys.stderr
            )
            return 1
        head, rest = text.split(BEGIN, 1)
        block, tail = rest.split(END, 1)
        if set(args.sections) != set(SECTIONS):
            # Only some sections ran: replace those, keep the others' results.
            new = {titles[name]: sections_md[name] for name in args.sections}
            note = (
                f"*Updated alone by `{command.strip()}` "
                f"({common.machine_line(info)}); the rest of this block is from "
                f"the run described at its top.*"
            )
            markdown = replace_sections(block, new, note)
        readme.write_text(f"{head}{BEGIN}\n\n{markdown.strip()}\n\n{END}{tail}")
        print(f"updated {readme}", flush=True)
    return 0


def replace_sections(block: str, new: dict[str, str], note: str) -> str:
    r"""``block`` with the text under each ``### title`` of ``new`` replaced.

    A title that is not in ``block`` is appended before its closing
    ``Whole run`` line.

    Examples
    --------
    >>> replace_sections("top\n\n### A\n\nold a\n\n### B\n\nb\n\nWhole run: 9 s.\n",
    ...                  {"A": "new a"}, "*note*")
    'top\n\n### A\n\n*note*\n\nnew a\n\n### B\n\nb\n\nWhole run: 9 s.\n'
    """
    lines = block.strip("\n").split("\n")
    trailer = [ln for ln in lines if ln.startswith("Whole run:")]
    lines = [ln for ln in lines if not ln.startswith("Whole run:")]
    chunks: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in lines:
        if line.startswith("### "):
            chunks.append((line[4:].strip(), []))
        else:
            chunks[-1][1].append(line)
    seen = {title for title, _ in chunks}
    out: list[str] = []
    for title, body in chunks:
        if title is not None:
            out.append(f"### {title}")
            if title in new:
                body = ["", note, "", *new[title].strip("\n").split("\n"), ""]
        out.extend(body)
    for title, text in new.items():
        if title not in seen:
            out += [f"### {title}", "", note, "", *text.strip("\n").split("\n"), ""]
    out += trailer
    return "\n".join(out).strip("\n") + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
