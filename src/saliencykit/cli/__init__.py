"""The ``saliencykit`` command: see what the library does without writing code.

    saliencykit explain [IMAGE] [--model ...] [--methods ...]   # every method, side by side
    saliencykit explain IMAGES... | FOLDER | "*.jpg" | list.txt  # many images: stored maps, resumable
    saliencykit evaluate [IMAGES ...] [--methods ...]           # PIC (SIC/AIC) over images
    saliencykit evaluate --run OUT                              # PIC of a stored run, with intervals

Also ``python -m saliencykit``. Errors in the input (a missing file, an
unknown method, a class out of range, a missing optional package) are one line
on stderr and a non-zero exit status: 2 for bad input, 3 for a missing
package, 1 for anything unexpected (``--traceback`` shows where), 130 when
interrupted; a run on many images exits with 4 when some images failed.
Deep-learning frameworks and matplotlib are imported only when a command
needs them.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import NoReturn

from .. import __version__
from ..allocator import reuse_freed_memory
from .console import Console
from .errors import CliError

__all__ = ["build_parser", "main"]

PROGRAM = "saliencykit"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like the command's other errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``saliencykit`` parser with its ``explain`` and ``evaluate`` sub-commands."""
    from . import evaluate, explain

    parser = _Parser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bar, notes or summary")
    common.add_argument("--traceback", action="store_true", help="show the traceback of an unexpected error")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    explain_parser = commands.add_parser(
        "explain",
        parents=[common],
        help="explain one image with every method, side by side, or many images into a stored run",
        description=explain.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explain.add_arguments(explain_parser)
    explain_parser.set_defaults(run=explain.run)
    evaluate_parser = commands.add_parser(
        "evaluate",
        parents=[common],
        help="score methods with the PIC metrics (SIC, AIC) over images",
        description=evaluate.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_arguments(evaluate_parser)
    evaluate_parser.set_defaults(run=evaluate.run)
    return parser


def _calm_libraries() -> None:
    """Keeps PyTorch's and OpenBLAS's threads from stalling each other, and TensorFlow's logs short.

    Only where the user has not set the variables.

    On a machine with few cores, or whose cores other processes also use,
    OpenMP threads that spin while they wait for each other, and OpenBLAS's own
    pool competing with PyTorch's, make every model call and every small
    BLAS/LAPACK call (the methods', PIC's triangulations) stall: ``explain``
    took 315 s instead of 21 s on a 2-core machine with one other busy
    process. Waiting threads that sleep (``OMP_WAIT_POLICY=PASSIVE``) and a
    single-threaded OpenBLAS avoid that. The variables are read when the
    libraries load, so this works only before NumPy and PyTorch are imported:
    always for the ``saliencykit`` command and ``python -m saliencykit``.

    It also keeps large freed blocks in the process for reuse
    (:func:`saliencykit.allocator.reuse_freed_memory`), unless the user set
    glibc's malloc thresholds (``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TRIM_THRESHOLD_``, ``glibc.malloc.*`` in ``GLIBC_TUNABLES``):
    batched model calls on the CPU then no longer fault in their activations
    afresh each call.
    """
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up INFO lines, on stderr
    if not _user_tuned_malloc(os.environ):
        reuse_freed_memory()


def _user_tuned_malloc(environment: Mapping[str, str]) -> bool:
    """Whether the user set glibc's malloc thresholds themselves (then the command leaves them)."""
    return any(
        name in environment for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    ) or "glibc.malloc." in environment.get("GLIBC_TUNABLES", "")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (``0`` on success).

    Args:
      argv: the arguments without the program name; default ``sys.argv[1:]``.
    """
    _calm_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(quiet=args.quiet, json=args.json)
    try:
        return args.run(args, console)
    except CliError as error:
        if args.traceback:
            traceback.print_exc()
        print(f"{PROGRAM} {args.command}: error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print(f"{PROGRAM} {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # an unexpected failure: one line, the traceback on request
        if args.traceback:
            traceback.print_exc()
        first_line = (str(error).strip().splitlines() or [""])[0]
        print(
            f"{PROGRAM} {args.command}: error: {type(error).__name__}: {first_line} "
            "(run again with --traceback for details)",
            file=sys.stderr,
        )
        return 1
