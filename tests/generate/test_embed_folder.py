"""`artdiff embed` reads the folder as prepare does: hidden entries and special files skipped, clear errors."""

import os
import sys
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from artdiff.errors import UserError
from artdiff.generate.embed import embed_folder

from helpers import pattern, save


class _Encoder:
    """A stand-in encoder that embeds each image as its mean colour, so the mean says which images went in."""

    dim = 3
    name = "fake"
    preprocessing = SimpleNamespace(to_dict=lambda: {})

    def __init__(self):
        self.seen = []

    def embed_images(self, images):
        self.seen += [image.getpixel((0, 0)) for image in images]
        return torch.stack([torch.tensor(image.getpixel((0, 0)), dtype=torch.float32) for image in images])


def _solid(path, color):
    from PIL import Image
    return save(Image.new("RGB", (20, 20), color), path)


def test_hidden_folders_and_files_are_skipped(tmp_path):
    _solid(tmp_path / "style" / "a.png", (200, 0, 0))
    _solid(tmp_path / "style" / ".thumbnails" / "t.png", (0, 200, 0))
    _solid(tmp_path / "style" / "._a.png", (0, 0, 200))  # macOS resource fork beside a copied file
    encoder = _Encoder()
    result = embed_folder(tmp_path / "style", encoder, tmp_path / "s.safetensors")
    assert result.images == 1 and encoder.seen == [(200, 0, 0)]
    assert torch.allclose(load_file(tmp_path / "s.safetensors")["embedding"], torch.tensor([1.0, 0, 0]))


def test_a_missing_folder_says_it_does_not_exist(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        embed_folder(tmp_path / "nope", _Encoder(), tmp_path / "s.safetensors")
    save(pattern(20, 20), tmp_path / "one.png")
    with pytest.raises(UserError, match="is not a folder"):
        embed_folder(tmp_path / "one.png", _Encoder(), tmp_path / "s.safetensors")


def test_out_naming_a_folder_is_one_line(tmp_path):
    _solid(tmp_path / "style" / "a.png", (200, 0, 0))
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="--out .* is a folder"):
        embed_folder(tmp_path / "style", _Encoder(), tmp_path / "out")


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and /dev/zero are POSIX")
def test_special_files_are_skipped_unopened(tmp_path):
    _solid(tmp_path / "style" / "a.png", (200, 0, 0))
    os.mkfifo(tmp_path / "style" / "pipe.png")
    (tmp_path / "style" / "zero.png").symlink_to("/dev/zero")
    result = embed_folder(tmp_path / "style", _Encoder(), tmp_path / "s.safetensors")
    assert result.images == 1 and sorted(os.path.basename(p) for p in result.skipped) == ["pipe.png", "zero.png"]
