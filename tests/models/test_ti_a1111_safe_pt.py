"""An artdiff .pt embedding passes A1111's safe unpickler (modules/safe.py check_pt), re-implemented here."""

import pickletools
import re
import zipfile

import pytest
import safetensors.torch
import torch

from artdiff.errors import UserError
from artdiff.models.textual_inversion_files import TextualInversion, load_textual_inversion, save_a1111_pt

# A1111's check_zip_filenames: every member is DIR/data.pkl, DIR/version or DIR/data/<number>.
A1111_NAMES = re.compile(r"^[^/]+/(data/\d+|version|data\.pkl)$")
# The globals A1111's RestrictedUnpickler.find_class allows (its optional pytorch_lightning ones left out).
A1111_GLOBALS = {
    ("collections", "OrderedDict"), ("__builtin__", "set"), ("_codecs", "encode"),
    ("torch.nn.modules.container", "ParameterDict"), ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy.core.multiarray", "scalar"), ("numpy.core.multiarray", "_reconstruct"),
    *(("torch._utils", n) for n in ("_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_device_tensor_from_numpy")),
    *(("torch", n) for n in ("FloatStorage", "HalfStorage", "IntStorage", "LongStorage", "DoubleStorage",
                             "ByteStorage", "float32", "BFloat16Storage")),
}


def a1111_check_pt(path):
    """Refuse what A1111's check_pt refuses: other zip members, other globals, not exactly one data.pkl."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        bad = [name for name in names if not A1111_NAMES.match(name)]
        assert not bad, f"bad file inside {path}: {bad[0]}"
        (pkl,) = [name for name in names if name.endswith("/data.pkl")]
        data = archive.read(pkl)
    strings = []  # STACK_GLOBAL takes its module and name from the two strings pushed before it
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        found = tuple(arg.split(" ", 1)) if op.name == "GLOBAL" else tuple(strings[-2:]) if op.name == "STACK_GLOBAL" \
            else None
        assert found is None or found in A1111_GLOBALS, f"global '{found[0]}/{found[1]}' is forbidden"


def embedding():
    return TextualInversion("<style>", torch.randn(4, 32, generator=torch.Generator().manual_seed(0)), "test", step=7)


def test_torch_save_itself_is_refused_by_a1111():
    # The reason for the writer: current torch adds records A1111's name check refuses.
    import io

    buffer = io.BytesIO()
    torch.save({"x": torch.ones(1)}, buffer)
    with pytest.raises(AssertionError, match="bad file inside"):
        a1111_check_pt(buffer)


def test_an_artdiff_pt_passes_a1111s_checks_and_loads_back(tmp_path):
    path = save_a1111_pt(tmp_path / "style.pt", embedding(), checkpoint_hash="0123456789")
    a1111_check_pt(path)
    data = torch.load(path, map_location="cpu", weights_only=True)
    assert data["string_to_token"] == {"*": 265} and data["name"] == "<style>" and data["step"] == 7
    assert data["sd_checkpoint"] == "0123456789" and data["sd_checkpoint_name"] is None
    assert torch.equal(data["string_to_param"]["*"], embedding().vectors)
    back = load_textual_inversion(path)
    assert back.token == "<style>" and torch.equal(back.vectors, embedding().vectors) and back.step == 7


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e38, -2e4])
def test_non_finite_or_absurd_vectors_are_one_line_naming_the_file(tmp_path, value):
    vectors = torch.zeros(2, 32)
    vectors[1, 3] = value
    safetensors.torch.save_file({"emb_params": vectors}, tmp_path / "broken.safetensors")
    with pytest.raises(UserError, match="broken.safetensors") as caught:
        load_textual_inversion(tmp_path / "broken.safetensors")
    assert "\n" not in str(caught.value)


def test_a_damaged_safetensors_embedding_is_one_line(tmp_path):
    path = save_a1111_pt(tmp_path / "ok.pt", embedding())
    safetensors.torch.save_file({"emb_params": embedding().vectors}, tmp_path / "cut.safetensors")
    data = (tmp_path / "cut.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:200])
    for name in ("cut.safetensors", "cut.pt"):
        with pytest.raises(UserError, match=name) as caught:
            load_textual_inversion(tmp_path / name)
        assert "\n" not in str(caught.value)
