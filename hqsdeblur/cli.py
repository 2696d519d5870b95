"""The ``hqsdeblur`` command line.

::

    hqsdeblur demo                                   # try it on the bundled example
    hqsdeblur deblur blurred.png -o sharp.png --kernel-out kernel.png
    hqsdeblur deblur photos/ -o sharp/ --skip-existing --report sharp/report.csv
    hqsdeblur eval --dataset levin --root ../shared/data
    hqsdeblur train ...
    hqsdeblur backends

Exit status: 0 success, 1 failure (any file failed; each failure is one line
on stderr naming the file, the other files are still written), 2 usage
error, 130 interrupted (Ctrl-C or SIGTERM; no partial file is left).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import warnings

from .errors import HqsdeblurError, InputError

__all__ = ["main", "build_parser"]

PROG = "hqsdeblur"
EXAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data_files")
# the bundled example's blur is about 17 px across: a 21 px window covers it
EXAMPLE_KERNEL_SIZE = 21

EXACT_HELP = ("for --method unrolled: the published DUBLID behaviour exactly (zero-padded "
              "border, FFT grid in multiples of 64, no kernel re-centring), for parity with "
              "the reference implementation")


# --------------------------------------------------------------------------- #
# argument parsing
# --------------------------------------------------------------------------- #

def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a positive integer")
    return v


def _odd_size(text):
    v = _positive_int(text)
    if v < 3 or v % 2 == 0:
        raise argparse.ArgumentTypeError(f"{text} must be an odd integer >= 3")
    return v


def _common(parser):
    # the train options come from hqsdeblur.train and may define some already
    taken = set(parser._option_string_actions)
    g = parser.add_argument_group("output control")
    if "--quiet" not in taken:
        g.add_argument("--quiet", *(["-q"] if "-q" not in taken else []), action="store_true",
                       help="no progress bar, notes or summary (errors are still printed)")
    if "--debug" not in taken:
        g.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def _method_args(parser, *, exact=True):
    from .batch import default_method

    method, _ = default_method()
    parser.add_argument("--method", choices=("tv", "unrolled"), default=None,
                        help=f"'tv' (classical, no training) or 'unrolled' (the network; "
                             f"needs a model); default here: {method}")
    parser.add_argument("--model", metavar="PATH",
                        help="model file for --method unrolled (ours or the published DUBLID "
                             ".npz); default: the model shipped with the package")
    parser.add_argument("--kernel-size", type=_odd_size, metavar="N",
                        help="odd kernel window size (default: 31 for tv, the model's window "
                             "for unrolled; for unrolled, a window above twice the model's "
                             "also runs tv's candidates and keeps the kernel with the sparsest result)")
    parser.add_argument("--backend", choices=("numpy", "cython", "numba", "cupy", "auto"),
                        default="auto", help="compute backend (default: auto)")
    if exact:
        parser.add_argument("--exact", action="store_true", help=EXACT_HELP)


def build_parser(*, with_train=False):
    """The argument parser (the ``train`` options are added only when
    `with_train`, as they need :mod:`hqsdeblur.train`)."""
    from . import __version__

    p = argparse.ArgumentParser(
        prog=PROG, description="Blind image deblurring: estimate the blur kernel and the sharp "
                               "image. First time? Run `hqsdeblur demo`.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser(
        "deblur", help="deblur image files",
        description="Deblur image files (.png, .jpg, .tif, .npy). One INPUT: OUTPUT is a file. "
                    "Several inputs, a folder or a glob pattern: OUTPUT is a folder (created "
                    "if missing) receiving OUTPUT/<input name>.",
        epilog="Exit status: 0 ok, 1 some file failed (one line each on stderr), 2 usage "
               "error, 130 interrupted. To try it on the bundled example: hqsdeblur demo")
    d.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders or glob patterns")
    d.add_argument("-o", "--output", metavar="OUTPUT", help="output file, or folder for several inputs")
    d.add_argument("--kernel-out", metavar="KERNEL",
                   help="also write the estimated kernel: a file for one input, else a folder "
                        "(<name>_kernel.<ext>); .npy keeps exact values")
    d.add_argument("--ext", metavar="EXT", help="output format for a folder output, e.g. png "
                                               "(default: the input's)")
    _method_args(d)
    d.add_argument("--colour", "--color", choices=("nonblind", "joint", "per-channel"),
                   default="nonblind", help="for unrolled on colour images: how channels are "
                                            "restored once the kernel is known (default: nonblind)")
    ow = d.add_mutually_exclusive_group()
    ow.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    ow.add_argument("--skip-existing", action="store_true",
                    help="skip inputs whose outputs all exist (resume an interrupted batch)")
    d.add_argument("--max-pixels", type=_positive_int, metavar="N",
                   help="refuse images larger than N pixels (default 100 million)")
    d.add_argument("--report", metavar="FILE", help="write one row per file to FILE (.csv or .json)")
    par = d.add_mutually_exclusive_group()
    par.add_argument("--workers", type=_positive_int, metavar="N",
                     help="process files on N local Dask worker processes (needs dask[distributed])")
    par.add_argument("--scheduler", metavar="ADDRESS",
                     help="process files on the Dask cluster at ADDRESS (e.g. tcp://host:8786)")
    _common(d)
    d.set_defaults(func=_cmd_deblur)

    m = sub.add_parser("demo", help="deblur the bundled example and show the PSNR gain",
                       description="Deblur the bundled example photograph; write the result and "
                                   "the kernel into DIR and print the PSNR gain.")
    m.add_argument("-o", "--output", metavar="DIR", default="hqsdeblur-demo",
                   help="output folder (default: ./hqsdeblur-demo/)")
    _method_args(m, exact=False)
    _common(m)
    m.set_defaults(func=_cmd_demo)

    e = sub.add_parser("eval", help="score a method on an evaluation set",
                       description="Run a method on a dataset and print the summary table.")
    e.add_argument("--dataset", required=True, choices=("levin", "lai2016"))
    e.add_argument("--root", default=os.path.join("..", "shared", "data"),
                   help="data root holding the dataset folders (default: ../shared/data)")
    _method_args(e)
    e.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N images")
    e.add_argument("--out", metavar="FILE", help="write rows and summary to this JSON report")
    _common(e)
    e.set_defaults(func=_cmd_eval)

    t = sub.add_parser("train", help="train the unrolled network (see hqsdeblur train --help)",
                       description="Train the unrolled network.")
    if with_train:
        from .train import add_train_arguments

        add_train_arguments(t)
    _common(t)
    t.set_defaults(func=_cmd_train)

    b = sub.add_parser("backends", help="list the compute backends that work here")
    _common(b)
    b.set_defaults(func=_cmd_backends)
    return p


# --------------------------------------------------------------------------- #
# commands
# --------------------------------------------------------------------------- #

def _settings(args, parser):
    """Method settings from the options, checked for consistency (usage
    errors exit with status 2)."""
    from .batch import default_method

    method = args.method
    if method is None:
        method, default_model = default_method()
    else:
        from .deblur import default_model_path

        # --method unrolled uses the shipped model even when it is not the
        # default method
        default_model = default_model_path() if method == "unrolled" else None
    if method == "tv":
        for flag, given in (("--exact", getattr(args, "exact", False)), ("--model", args.model)):
            if given:
                parser.error(f"{flag} applies to --method unrolled only")
    elif args.model is None and default_model is None:
        parser.error("--method unrolled needs --model PATH (no model ships with this installation)")
    return {"method": method, "model": args.model or default_model, "kernel_size": args.kernel_size,
            "backend": None if args.backend == "auto" else args.backend,
            "exact": getattr(args, "exact", False) or None}


def _say(args, *lines, err=False):
    if not args.quiet:
        print(*lines, sep="\n", file=sys.stderr if err else sys.stdout)


def _error(msg):
    print(f"{PROG}: error: {' '.join(str(msg).split())}", file=sys.stderr)


@contextlib.contextmanager
def _dask_client(args):
    if not (args.workers or args.scheduler):
        yield None
        return
    from .distributed import connect, local_client  # imports Dask, or says it is missing

    with (connect(args.scheduler) if args.scheduler else local_client(args.workers)) as client:
        yield client


def _is_batch(inputs, output):
    from .batch import _has_magic

    if len(inputs) != 1 or output.endswith(("/", os.sep)) or os.path.isdir(output):
        return True
    x = inputs[0]
    return os.path.isdir(x) or (_has_magic(x) and not os.path.lexists(x))


def _cmd_deblur(args, parser):
    from .batch import deblur_files, run_jobs

    if not args.inputs or not args.output:
        parser.error("give at least one INPUT and -o OUTPUT "
                     "(for a first try on the bundled example run: hqsdeblur demo)")
    settings = _settings(args, parser)
    settings.update(colour=args.colour, max_pixels=args.max_pixels)
    settings = {k: v for k, v in settings.items() if v is not None}
    client_mode = bool(args.workers or args.scheduler)
    if settings["method"] == "unrolled" and not client_mode:
        from .model_io import load_model

        # load (and check) the model once, before any file is touched
        settings["model"] = load_model(settings["model"])
    common = {"settings": settings, "progress": not args.quiet, "report": args.report}
    with _dask_client(args) as client:
        if _is_batch(args.inputs, args.output):
            rows = deblur_files(args.inputs, args.output, kernel_dir=args.kernel_out, ext=args.ext,
                                overwrite=args.overwrite, skip_existing=args.skip_existing,
                                client=client, **common)
        else:
            if args.ext:
                parser.error("--ext applies to a folder output; give the extension in -o")
            job = {"input": args.inputs[0], "output": args.output, "kernel": args.kernel_out,
                   "overwrite": args.overwrite, "skip_existing": args.skip_existing}
            rows = run_jobs([job], client=client, **common)
    for r in rows:
        for note in r.get("notes") or ():
            _say(args, f"{PROG}: note: {note}", err=True)
        if r["status"] == "failed":
            _error(r["error"])
    ok = [r for r in rows if r["status"] == "ok"]
    skipped = sum(r["status"] == "skipped" for r in rows)
    failed = len(rows) - len(ok) - skipped
    for r in ok:
        _say(args, f"wrote {r['output']}" + (f" and {r['kernel']}" if r["kernel"] else ""))
    if len(rows) > 1 or skipped:
        _say(args, f"{len(ok)} deblurred, {skipped} skipped, {failed} failed")
    return 1 if failed else 0


def _cmd_demo(args, parser):
    from .batch import process_file
    from .io import read_image
    from .metrics import aligned_compare

    settings = _settings(args, parser)
    if settings["method"] == "tv" and settings["kernel_size"] is None:
        settings["kernel_size"] = EXAMPLE_KERNEL_SIZE
    blurred = os.path.join(EXAMPLE_DIR, "example_blurred.png")
    sharp = os.path.join(EXAMPLE_DIR, "example_sharp.png")
    if not os.path.isfile(blurred):
        raise InputError(f"{blurred}: the bundled example is missing from this installation.")
    os.makedirs(args.output, exist_ok=True)
    out = os.path.join(args.output, "example_deblurred.png")
    kout = os.path.join(args.output, "example_kernel.png")
    _say(args, f"deblurring the bundled example {blurred} (method {settings['method']}) ...", err=True)
    # the demo's own files: rerunning it replaces them
    row = process_file(blurred, out, kernel_path=kout, settings=settings, overwrite=True)
    if row["status"] != "ok":
        _error(row["error"])
        return 1
    y, x, s = (read_image(p)[0] for p in (blurred, out, sharp))
    before, after = aligned_compare(y, s)["psnr"], aligned_compare(x, s)["psnr"]
    print(f"deblurred image: {out}")
    print(f"estimated kernel: {kout}")
    print(f"PSNR against the sharp original: {before:.2f} dB blurred -> {after:.2f} dB deblurred "
          f"({after - before:+.2f} dB) in {row['seconds']:.1f} s")
    return 0


def _cmd_eval(args, parser):
    from functools import partial

    from .deblur import deblur
    from .evaluate import evaluate, format_table, write_report

    settings = _settings(args, parser)
    if settings["method"] == "unrolled":
        from .model_io import load_model

        settings["model"] = load_model(settings["model"])
    kwargs = {k: v for k, v in settings.items() if v is not None}
    rows, summary = evaluate(partial(deblur, **kwargs), args.root, args.dataset, limit=args.limit,
                             progress=not args.quiet)
    label = settings["method"] + (" (exact)" if settings.get("exact") else "")
    print(format_table({label: summary}))
    if args.out:
        write_report(args.out, rows, summary, dataset=args.dataset, method=label,
                     model=args.model, kernel_size=args.kernel_size)
        _say(args, f"wrote {args.out}", err=True)
    return 0


def _cmd_train(args, parser):
    from .train import run_train

    return int(run_train(args) or 0)


def _cmd_backends(args, parser):
    from .backend import available_backends, get_backend

    auto = get_backend(None).name
    for name in available_backends():
        print(name + ("  (default)" if name == auto else ""))
    return 0


# --------------------------------------------------------------------------- #
# entry point
# --------------------------------------------------------------------------- #

def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    """Run the command line; returns the exit status.

    Example
    -------
    >>> main(["backends"])  # doctest: +SKIP
    numpy  (default)
    0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    with_train = bool(argv) and argv[0] == "train"
    if with_train:
        try:
            import hqsdeblur.train  # noqa: F401
        except ImportError as exc:
            if exc.name not in ("hqsdeblur.train",):
                raise
            _error("`hqsdeblur train` is not available: this installation has no hqsdeblur.train module.")
            return 1
    parser = build_parser(with_train=with_train)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    sub = parser._subparsers._group_actions[0].choices[args.command]
    debug = getattr(args, "debug", False)

    old = None
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with warnings.catch_warnings():
            if getattr(args, "quiet", False):
                warnings.simplefilter("ignore")
            return args.func(args, sub)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no partial output was left.", file=sys.stderr)
        return 130
    except (HqsdeblurError, OSError, ValueError, MemoryError) as exc:
        if debug:
            raise
        _error(exc if not isinstance(exc, MemoryError) else "out of memory")
        return 1
    except Exception as exc:  # a bug: one line, the traceback with --debug
        if debug:
            raise
        _error(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        return 1
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


if __name__ == "__main__":
    sys.exit(main())
