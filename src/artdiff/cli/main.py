"""The `artdiff` command: registers one subcommand per module and turns errors into one clear line."""

from __future__ import annotations

import argparse
import importlib
import inspect
import signal
import sys

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
    "convert": ("artdiff.cli.convert", "copy a model directory with its weights in another precision (fp16)"),
    "quickstart": ("artdiff.cli.quickstart", "train artdiff-mini from nothing, offline (the whole recipe)"),
    "demo": ("artdiff.cli.demo", "run the main job on the shipped model and print where the results are"),
}


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser(selected: str | None = None, argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Build the parser; only the selected command's module is imported and given its flags."""
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


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, run one command, and return its exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(selected if selected in COMMANDS else None, argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    signal.signal(signal.SIGTERM, _raise_interrupt)  # a kill stops as cleanly as Ctrl-C: workers, temp files
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"artdiff {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the one place errors become a message
        if args.debug:
            raise
        print(f"artdiff {args.command}: error: {describe_error(error)}", file=sys.stderr)
        return 2 if _is_user_error(error) else 1


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _is_user_error(error: BaseException) -> bool:
    from artdiff.errors import UserError

    return isinstance(error, (UserError, FileNotFoundError, PermissionError, IsADirectoryError))


def describe_error(error: BaseException) -> str:
    """Say in one line what went wrong and, where we know it, how to fix it."""
    if _is_user_error(error):
        return str(error)
    if isinstance(error, MemoryError) or "out of memory" in str(error).lower():
        return "out of memory: try a smaller --batch-size or image size"
    if isinstance(error, OSError) and error.errno == 28:
        return "no space left on the device: free some disk space and run again (finished work is kept)"
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first} (this is a bug in artdiff; run with --debug for the traceback)"
