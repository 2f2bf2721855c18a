"""The `artdiff` command: registers one subcommand per module and turns errors into one clear line."""

from __future__ import annotations

# Only light modules at the top: a Ctrl-C or kill may come at any moment, and main() must be running (with its
# handlers installed) as early as possible; each command's module, and torch with it, is imported in main().
import argparse
import atexit
import os
import signal
import sys
import threading
import types
from collections.abc import Callable

# name -> (module, one-line help). Modules are imported only for the command being run,
# so `artdiff --help` stays fast and never imports torch.
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("artdiff.cli.prepare", "turn a folder of artwork into a clean training set"),
    "synth": ("artdiff.cli.synth", "write a procedural art set with known labels (styles, palettes, grounds)"),
    "generate": ("artdiff.cli.generate", "generate images from text, image and embedding prompts"),
    "vary": ("artdiff.cli.vary", "make variations of an image with an image-variation model"),
    "embed": ("artdiff.cli.embed", "save a folder's mean image embedding as a reusable style vector"),
    "train": ("artdiff.cli.train", "train a model: judge, encoder, vae, embedding-ldm, image-variation, "
                                   "textual-inversion, lora"),
    "evaluate": ("artdiff.cli.evaluate", "measure the judge or a joint encoder on a labelled set"),
    "convert": ("artdiff.cli.convert", "copy a model directory in another precision, or convert an improved/guided-diffusion checkpoint"),
    "quickstart": ("artdiff.cli.quickstart", "train artdiff-mini from nothing, offline (the whole recipe)"),
    "demo": ("artdiff.cli.demo", "run the main job on the shipped model and print where the results are"),
}
INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser(selected: str | None = None, argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Build the parser; only the selected command's module is imported and given its flags."""
    import importlib
    import inspect

    from artdiff import __version__

    parser = OneLineErrorParser(
        prog="artdiff",
        description="Adapt diffusion models to art and generate from them.",
        epilog="Run `artdiff COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"artdiff {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (module_name, help_text) in COMMANDS.items():
        if name == selected:
            module = importlib.import_module(module_name)
            takes_argv = "argv" in inspect.signature(module.add_parser).parameters  # nested commands
            sub = module.add_parser(subparsers, argv=argv) if takes_argv else module.add_parser(subparsers)
            sub.set_defaults(run=module.run)
            if not takes_argv:  # nested commands add these to each of their own subcommands
                _add_common_flags(sub)
        else:
            subparsers.add_parser(name, help=help_text)
    return parser


def _add_common_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--json", action="store_true", help="print a machine-readable result as JSON")
    sub.add_argument("--debug", action="store_true", help="show the full traceback on errors")


class _Interrupts:
    """SIGINT and SIGTERM as one KeyboardInterrupt, then a quiet exit 130 for any later one.

    The first signal raises KeyboardInterrupt so that `finally` blocks remove temp files and stop workers; a
    second one during that clean-up, or one after main() has returned (atexit handlers, interpreter shutdown),
    ends the process at once with one line instead of a traceback from wherever it landed. As the program, a
    first signal also arms a watchdog: should a library swallow the KeyboardInterrupt and carry on, the process
    still ends `grace` seconds later.
    """

    grace = 15.0  # seconds of clean-up a stopped command gets (training saves under its own handler instead)

    def __init__(self, label: str, *, as_program: bool) -> None:
        self.label = label
        self.as_program = as_program
        self.raised = False
        self.previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
        for number in STOP_SIGNALS:
            signal.signal(number, self.handle)

    def handle(self, signum: int, frame: types.FrameType | None) -> None:
        if self.raised or _importing(frame):
            # Inside an import (torch's, say) a KeyboardInterrupt can land in code a C++ extension runs and abort
            # the process (status -6); an import has nothing to clean up, so end at once.
            self.exit_now()
        self.raised = True
        if self.as_program:
            watchdog = threading.Timer(self.grace, self.exit_now)
            watchdog.daemon = True
            watchdog.start()
        raise KeyboardInterrupt

    def exit_now(self, *_: object) -> None:
        with_line = f"{self.label}: interrupted\n".encode()
        os.write(2, with_line)
        os._exit(INTERRUPTED)

    def finish(self, *, as_program: bool) -> None:
        """Leave quiet late handlers when this is the program (atexit still runs), else restore the caller's."""
        for number in STOP_SIGNALS:
            signal.signal(number, self.exit_now if as_program else self.previous[number])


def _importing(frame: types.FrameType | None) -> bool:
    """Whether the interrupted code runs inside an import (a frame of importlib's bootstrap is on the stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, run one command, and return its exit code."""
    as_program = argv is None  # the console script and `python -m artdiff`; tests pass argv
    argv = sys.argv[1:] if argv is None else list(argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    label = f"artdiff {selected}" if selected in COMMANDS else "artdiff"
    # First of all: a Ctrl-C or kill while torch imports is one line too.
    interrupts = _Interrupts(label, as_program=as_program)
    stopped = False
    try:
        code = _run(argv, selected, label, interrupted=lambda: interrupts.raised)
    except KeyboardInterrupt:
        code, stopped = INTERRUPTED, True
    finally:
        interrupts.finish(as_program=as_program)
    if stopped or interrupts.raised:  # also when a library swallowed the interrupt and the command ran on
        print(f"{label}: interrupted", file=sys.stderr)
        code = INTERRUPTED
        if as_program:
            # CPython exits by re-raising SIGINT (status -2, not 130) once a KeyboardInterrupt went unhandled
            # inside code a C extension ran, even when Python code caught it later (seen during imports):
            # run the exit handlers and end with our code ourselves.
            sys.stdout.flush()
            sys.stderr.flush()
            atexit._run_exitfuncs()
            os._exit(code)
    return code


def _run(argv: list[str], selected: str | None, label: str, *, interrupted: Callable[[], bool]) -> int:
    """Build the parser (importing the command), parse, run, and turn an exception into one line."""
    debug = "--debug" in argv
    try:
        parser = build_parser(selected if selected in COMMANDS else None, argv)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return int(args.run(args) or 0)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:  # noqa: BLE001 - the one place errors become a message
        if interrupted():
            # A library caught the KeyboardInterrupt (transformers' lazy imports re-raise what a half-done
            # import left as ModuleNotFoundError): whatever surfaces after a stop signal is that signal.
            raise KeyboardInterrupt from None
        if debug:
            raise
        print(f"{label}: error: {describe_error(error)}", file=sys.stderr)
        return 2 if _is_user_error(error) else 1


def _is_user_error(error: BaseException) -> bool:
    from artdiff.errors import UserError

    return (isinstance(error, (UserError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                               MemoryError))
            or _bad_utf8(error) or _no_space(error) or _out_of_memory(error))


def _bad_utf8(error: BaseException) -> bool:
    # Bytes that are not UTF-8 reach Python's argv as lone surrogates, which fail once they are encoded.
    return isinstance(error, UnicodeEncodeError) and "surrogate" in str(error)


def _no_space(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno == 28


def _out_of_memory(error: BaseException) -> bool:
    text = str(error)
    return isinstance(error, MemoryError) or (isinstance(error, RuntimeError) and (
        "out of memory" in text.lower() or "DefaultCPUAllocator" in text or "Cannot allocate memory" in text))


def describe_error(error: BaseException) -> str:
    """Say in one line what went wrong and, where we know it, how to fix it."""
    if _bad_utf8(error):
        bad = ascii(error.object[error.start:error.end]) if isinstance(error, UnicodeEncodeError) else "?"
        return (f"an argument holds bytes that are not UTF-8 (e.g. {bad}); pass prompts and option values as "
                "UTF-8 text")
    if _no_space(error):
        return f"no space left on {_device_of(getattr(error, 'filename', None))}: free some disk space and run " \
               "again (finished work is kept)"
    if _out_of_memory(error):
        return ("out of memory: ask for less at once: a smaller image (--size, --width, --height), fewer images per "
                "batch (--batch-size) or a smaller model")
    if _is_user_error(error):
        return " ".join(str(error).split("\n")).strip() or type(error).__name__
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first} (this is a bug in artdiff; run with --debug for the traceback)"


def _device_of(filename: object) -> str:
    """'the device of MOUNT (writing FILE)' for the file being written, or 'the device' when it is unknown."""
    if not isinstance(filename, (str, bytes, os.PathLike)):
        return "the device"
    path = os.path.abspath(os.fsdecode(filename))
    existing = path
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    mount = existing
    while not os.path.ismount(mount):
        mount = os.path.dirname(mount)
    return f"the device of {mount} (writing {path})"
