"""artdiff's infotext read back the way A1111's PNG Info reads it (infotext_utils.parse_generation_parameters)."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from artdiff.generate.any_model import generate
from artdiff.generate.options import GenerateOptions
from artdiff.generate.sd_generate import infotext_fields
from artdiff.models.lora import AppliedLora
from artdiff.utils.pngmeta import infotext, model_display_name, read_parameters
from sd_fixtures import tiny_sd

# A1111's grammar of the last line: `Key: value` pairs, a value either a JSON string or text up to the next comma.
PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
SIZE = re.compile(r"^(\d+)x(\d+)$")


def a1111_parse(text: str) -> dict[str, str]:
    """Our re-implementation of parse_generation_parameters' core (prompt, negative, pairs, sizes, unquoting)."""
    *lines, last = text.strip().split("\n")
    if len(PAIR.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    result = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in PAIR.findall(last):
        if value[:1] == '"' and value[-1:] == '"':
            try:
                value = json.loads(value)
            except ValueError:
                pass
        size = SIZE.match(value)
        if size:
            result[f"{key}-1"], result[f"{key}-2"] = size.groups()
        else:
            result[key] = value
    return result


def test_values_with_commas_colons_and_newlines_come_back():
    extra = {"Lora hashes": "a: 0123, b: 4567", "Variation of": 'my "best", v2:final.png', "Eta": 0.5,
             "Skipped": None}
    text = infotext("a harbour, at dusk\nsecond line", negative="blurry, sketch", steps=20, sampler="euler_a",
                    cfg_scale=7.5, seed=4294967295, size=(768, 512), model_name="my, model", model_hash="abc",
                    extra=extra)
    parsed = a1111_parse(text)
    assert parsed["Prompt"] == "a harbour, at dusk\nsecond line" and parsed["Negative prompt"] == "blurry, sketch"
    assert (parsed["Steps"], parsed["Sampler"], parsed["CFG scale"], parsed["Seed"]) == ("20", "Euler a", "7.5",
                                                                                       "4294967295")
    assert (parsed["Size-1"], parsed["Size-2"], parsed["Model"], parsed["Model hash"]) == ("768", "512", "my, model",
                                                                                         "abc")
    assert parsed["Lora hashes"] == "a: 0123, b: 4567" and parsed["Variation of"] == 'my "best", v2:final.png'
    assert parsed["Eta"] == "0.5" and "Skipped" not in parsed


@pytest.mark.parametrize("sampler, label", [("dpm++2m", "DPM++ 2M"), ("euler_a", "Euler a"), ("euler", "Euler"),
                                            ("heun", "Heun"), ("ddim", "DDIM"), ("plms", "PLMS")])
def test_sampler_labels_are_a1111s(sampler, label):
    text = infotext("x", steps=1, sampler=sampler, cfg_scale=1, seed=0, size=(8, 8), model_name="m", model_hash="h")
    assert a1111_parse(text)["Sampler"] == label


def test_lora_hashes_use_a1111_names_and_fields_appear_only_when_used():
    lora = AppliedLora(Path("x.safetensors"), "style:v1,final", "0123456789ab", 0.7, 1, 0)
    fields = infotext_fields(GenerateOptions(sampler="ddim", eta=0.3, karras=True, clip_skip=2), eta=0.3,
                             loras=[lora], ti="wild: 00ff00ff00ff")
    text = infotext("x", steps=1, sampler="ddim", cfg_scale=1, seed=0, size=(8, 8), model_name="m", model_hash="h",
                    extra=fields)
    parsed = a1111_parse(text)
    assert parsed["Lora hashes"] == "stylev1final: 0123456789ab" and parsed["TI hashes"] == "wild: 00ff00ff00ff"
    assert (parsed["Schedule type"], parsed["Eta DDIM"], parsed["Clip skip"]) == ("Karras", "0.3", "2")
    plain = infotext_fields(GenerateOptions(sampler="euler_a"), eta=1.0, loras=[], ti=None)
    assert {k for k, v in plain.items() if v is not None} == set()  # defaults write nothing extra


def test_model_names_are_meaningful(tmp_path):
    run = tmp_path / "myrun" / "model"
    run.mkdir(parents=True)
    (tmp_path / "v1-5.safetensors").write_bytes(b"x")
    assert model_display_name(run) == "myrun" and model_display_name(tmp_path / "v1-5.safetensors") == "v1-5"
    snapshot = tmp_path / "models--org--sd-tiny" / "snapshots" / "abc123"
    assert model_display_name(snapshot) == "sd-tiny"


def test_a_stable_diffusion_png_reads_back_in_a1111(tmp_path):
    from artdiff.models.textual_inversion_files import TextualInversion, save_diffusers_embeds

    model = tiny_sd(tmp_path / "sd")
    shutil.move(str(model), str(tmp_path / "harbour-run" / "model"))
    torch.manual_seed(0)
    ti = save_diffusers_embeds(tmp_path / "wild.safetensors", TextualInversion("<wild>", torch.randn(2, 32), "diffusers"))
    ti = Path(ti) if ti else tmp_path / "wild.safetensors"
    result = generate(GenerateOptions(prompts=["a harbour, by <wild>: dusk"], negative="blurry, dark",
                                      model=str(tmp_path / "harbour-run" / "model"), embeddings=[str(ti)],
                                      sampler="euler_a", karras=True, eta=0.5, clip_skip=2, steps=2, size=16, n=1,
                                      seed=12, cfg=6.5, out=tmp_path / "out"))
    parsed = a1111_parse(read_parameters(result.paths[0]))
    assert parsed["Prompt"] == "a harbour, by <wild>: dusk" and parsed["Negative prompt"] == "blurry, dark"
    expected = {"Steps": "2", "Sampler": "Euler a", "Schedule type": "Karras", "CFG scale": "6.5", "Seed": "12",
                "Size-1": "16", "Size-2": "16", "Model": "harbour-run", "Eta": "0.5", "Clip skip": "2",
                "TI hashes": f"wild: {hashlib.sha256(ti.read_bytes()).hexdigest()[:12]}"}
    assert {k: parsed.get(k) for k in expected} == expected
