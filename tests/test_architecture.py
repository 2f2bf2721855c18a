"""Imports flow down the layers of DESIGN.md §2; some libraries are confined to one place."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "artdiff"
LAYER = {"config": 0, "types": 0, "errors": 0, "utils": 0, "core": 1, "models": 2, "data": 2,
         "train": 3, "generate": 3, "evaluate": 3, "studio": 4, "cli": 5, "ui": 5, "__main__": 5,
         "__init__": 0, "assets": 0}
# Siblings that may import each other (train may use generate for validation images and evaluate metrics).
ALLOWED_SIDEWAYS = {("train", "generate"), ("train", "evaluate"), ("evaluate", "generate"), ("cli", "ui"),
                    ("__main__", "cli")}
CONFINED = {"argparse": ("cli",), "gradio": ("ui",), "accelerate": ("train/loop.py",), "tqdm": ("utils/progress.py",)}
FORBIDDEN = ("torchvision", "open_clip", "timm", "spandrel", "k_diffusion", "lpips", "basicsr")
CORE_MAY_IMPORT = ("torch", "math", "bisect", "dataclasses", "typing", "collections", "__future__", "functools", "enum",
                   "artdiff.core", "artdiff.types", "artdiff.errors")


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        yield relative, ast.parse(path.read_text(), filename=str(path))


def imported_names(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def top(relative: Path) -> str:
    return relative.parts[0].removesuffix(".py")


def test_imports_flow_down():
    wrong = []
    for relative, tree in modules():
        here = top(relative)
        for name in imported_names(tree):
            if not name.startswith("artdiff."):
                continue
            there = name.split(".")[1]
            if there not in LAYER or there == here or (here, there) in ALLOWED_SIDEWAYS:
                continue
            # Upward imports are wrong; so are sideways ones above layer 0 (models and data never meet).
            if LAYER[there] > LAYER[here] or (LAYER[there] == LAYER[here] > 0):
                wrong.append(f"{relative} imports {name}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_confined_and_forbidden_libraries():
    wrong = []
    for relative, tree in modules():
        for name in imported_names(tree):
            root = name.split(".")[0]
            if root in FORBIDDEN:
                wrong.append(f"{relative} imports {root}, which pulls torchvision (DESIGN.md §8)")
            places = CONFINED.get(root)
            if places and not any(relative.as_posix().startswith(p) for p in places):
                wrong.append(f"{relative} imports {root}; only {places} may")
    assert not wrong, "\n".join(wrong)


def test_core_is_torch_only():
    wrong = [f"{relative} imports {name}" for relative, tree in modules() if top(relative) == "core"
             for name in imported_names(tree) if not name.startswith(CORE_MAY_IMPORT)]
    assert not wrong, "\n".join(wrong)


def test_from_pretrained_only_in_factory():
    wrong = [str(relative) for relative, tree in modules() if relative.as_posix() != "models/factory.py"
             and any(isinstance(n, ast.Attribute) and n.attr == "from_pretrained" for n in ast.walk(tree))]
    assert not wrong, f"from_pretrained outside models/factory.py: {wrong}"


def test_the_checker_catches_an_upward_import(tmp_path):
    tree = ast.parse("from artdiff.cli.main import main\n")
    assert list(imported_names(tree)) == ["artdiff.cli.main"] and LAYER["cli"] > LAYER["core"]
