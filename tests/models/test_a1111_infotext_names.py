"""The names and hashes A1111 writes in `TI hashes` and `Lora hashes` (sd_hijack_clip, extra_networks_lora)."""

import hashlib
from pathlib import Path

import torch

from artdiff.models.lora import AppliedLora, a1111_lora_name
from artdiff.models.textual_inversion_files import (
    TextualInversion,
    a1111_embedding_hash,
    a1111_embedding_name,
    save_a1111_pt,
)


def test_embedding_hash_is_the_whole_files_sha256_first_12_digits(tmp_path):
    path = save_a1111_pt(tmp_path / "my:style,v2.pt", TextualInversion("tok", torch.ones(2, 8), "a1111-pt"))
    assert a1111_embedding_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    # A1111 names a .pt by its file name (not the stored "name"), without ':' and ','.
    assert a1111_embedding_name(path) == "mystylev2"


def test_lora_infotext_name_drops_colons_and_commas():
    assert a1111_lora_name("a:b,c d") == "abc d"
    applied = AppliedLora(Path("x.safetensors"), "style:v1,final", "0123456789ab", 1.0, 1, 0)
    assert applied.infotext_name == "stylev1final" and applied.name == "style:v1,final"
