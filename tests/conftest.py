"""Test settings: offline, one intra-op thread (tiny tensors are slower with more), seeds fixed."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

ARTWORKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "artworks"


def pytest_configure(config: pytest.Config) -> None:
    if "torch" in sys.modules or _torch_available():
        import torch

        torch.set_num_threads(1)
        torch.manual_seed(0)


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    run_slow = os.environ.get("RUN_SLOW") == "1"
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: run with `make test-slow`"))
        if "gpu" in item.keywords:
            import torch

            if not torch.cuda.is_available():
                item.add_marker(pytest.mark.skip(reason="needs CUDA"))


@pytest.fixture
def artworks() -> Path:
    """The real paintings in ../shared/data/artworks; the test is skipped where they are absent."""
    if not ARTWORKS.is_dir() or not any(ARTWORKS.glob("*.jpg")):
        pytest.skip("real paintings not present (../shared/data/artworks)")
    return ARTWORKS
