"""Images a user names on the command line (image prompts, init images, vary's source), read safely."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from artdiff.errors import UserError
from artdiff.utils.images import ImageReadError, decode_rgb, open_regular_file


@dataclass(frozen=True)
class InputImage:
    """An input image as RGB and the sha256 of its file (hashed from the same read)."""

    image: Image.Image
    sha256: str


def read_input_image(path: str | Path, *, what: str) -> InputImage:
    """Read the image file `what` names (e.g. "--init-image"), or raise one UserError naming it.

    The file is checked before it is read (a FIFO, device or folder is refused unopened, its size is bounded),
    as prepare reads files, so a named pipe cannot hang generation.
    """
    try:
        with open_regular_file(Path(path)) as handle:
            data = handle.read()
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except ImageReadError as error:
        if error.reason == "not-a-file":  # the detail starts with what it is: "a folder", "a FIFO (named pipe)"
            raise UserError(f"{what} {path} is {error.detail.split(';')[0]}; pass one image file") from None
        raise UserError(f"{what} {path} cannot be used ({error.detail or error.reason})") from None
    except OSError as error:
        raise UserError(f"{what} {path} cannot be read ({error.strerror or error})") from None
    try:
        image = decode_rgb(data).image
    except ImageReadError as error:
        raise UserError(f"{what} {path} cannot be read ({error})") from None
    return InputImage(image, hashlib.sha256(data).hexdigest())
