"""Every loader against damaged and hostile files: one line naming the file and the fix, no pickle run, no hang."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from artdiff.cli.main import main
from artdiff.errors import UserError
from artdiff.evaluate.judge_eval import load_checked_judge
from artdiff.generate.embedding_generate import load_embedding_model
from artdiff.models.encoders import load_encoder
from artdiff.models.image_variation import load_image_variation
from artdiff.models.stable_diffusion import load_stable_diffusion
from artdiff.utils.assets import SHIPPED_ENCODER, SHIPPED_JUDGE, SHIPPED_MODEL
from iv_fixtures import tiny_iv
from sd_fixtures import tiny_sd

RAN: list[str] = []


class Payload:
    """A pickle that would run code when loaded."""

    def __reduce__(self):
        return (RAN.append, ("pickle code ran",))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    return {"sd": tiny_sd(root / "sd"), "iv": tiny_iv(root / "iv"), "eldm": with_encoder_copied_in(root / "eldm"),
            "encoder": SHIPPED_ENCODER, "judge": SHIPPED_JUDGE}


def with_encoder_copied_in(folder: Path) -> Path:
    """artdiff-mini with its own encoder/ instead of the reference to cloob-mini, so a copy can be damaged too."""
    shutil.copytree(SHIPPED_MODEL, folder)
    shutil.copytree(SHIPPED_ENCODER, folder / "encoder")
    info = json.loads((folder / "artdiff.json").read_text())
    del info["components"]
    (folder / "artdiff.json").write_text(json.dumps(info))
    return folder


def truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def empty(file: Path) -> None:
    file.write_bytes(b"")


def junk(file: Path) -> None:
    file.write_bytes(b"\x00not a model file" * 50)


def bad_json(file: Path) -> None:
    file.write_text('{"a": 1,')


def a_folder(file: Path) -> None:
    file.unlink()
    file.mkdir()


def pickled_only(file: Path) -> None:
    """Replace the safetensors weights by a pickle, as old transformers/diffusers folders hold (.bin)."""
    name = "pytorch_model.bin" if file.name == "model.safetensors" else "diffusion_pytorch_model.bin"
    file.unlink()
    (file.parent / name).write_bytes(pickle.dumps({"weight": Payload()}))


def drop_a_tensor(file: Path) -> None:
    tensors = load_file(file)
    tensors.pop(sorted(tensors)[0])
    save_file(tensors, file)


def wrong_shape(file: Path) -> None:
    tensors = load_file(file)
    tensors[sorted(tensors)[0]] = torch.zeros(3)
    save_file(tensors, file)


def wrong_dtype(file: Path) -> None:
    tensors = load_file(file)
    key = sorted(tensors)[0]
    tensors[key] = tensors[key].to(torch.int32)
    save_file(tensors, file)


def set_keys(**changes) -> Callable[[Path], None]:
    def mutate(file: Path) -> None:
        file.write_text(json.dumps({**json.loads(file.read_text()), **changes}))
    return mutate


LOADERS = {"sd": load_stable_diffusion, "iv": load_image_variation, "eldm": load_embedding_model,
           "encoder": load_encoder, "judge": load_checked_judge}
WEIGHTS = {"unet": "unet/diffusion_pytorch_model.safetensors", "vae": "vae/diffusion_pytorch_model.safetensors",
           "text_encoder": "text_encoder/model.safetensors", "image_encoder": "image_encoder/model.safetensors",
           "encoder": "encoder/model.safetensors", "clip": "model.safetensors", "judge": "judge.safetensors"}
# (model kind, part) pairs: every weights file of every model kind artdiff loads
PARTS = [("sd", "unet"), ("sd", "vae"), ("sd", "text_encoder"), ("iv", "image_encoder"), ("iv", "unet"),
         ("eldm", "unet"), ("eldm", "encoder"), ("encoder", "clip"), ("judge", "judge")]
DAMAGE = {"truncated": (truncate, "truncated or corrupt"), "empty": (empty, "truncated or corrupt"),
          "junk": (junk, "truncated or corrupt"), "a folder": (a_folder, "is a folder where"),
          "missing tensor": (drop_a_tensor, "lacks 1 of the tensors|does not match .*config.json"),
          "wrong shape": (wrong_shape, "shapes in its weights do not match|does not match .*config.json"),
          "wrong dtype": (wrong_dtype, "model weights are floating point")}


def damaged(folders: dict[str, Path], tmp_path: Path, kind: str, relative: str, mutate: Callable[[Path], None]
            ) -> Path:
    folder = shutil.copytree(folders[kind], tmp_path / kind)
    mutate(folder / relative)
    return folder


def refused(kind: str, folder: Path, match: str) -> str:
    with pytest.raises(UserError, match=match) as caught:
        LOADERS[kind](folder)
    message = str(caught.value)
    assert "\n" not in message and "bug in artdiff" not in message and str(folder) in message
    return message


@pytest.mark.parametrize("kind, part", PARTS)
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_weights_file_is_one_line_naming_it(folders, tmp_path, kind, part, damage):
    mutate, match = DAMAGE[damage]
    refused(kind, damaged(folders, tmp_path, kind, WEIGHTS[part], mutate), match)


@pytest.mark.parametrize("kind, part", [p for p in PARTS if p[0] != "judge"])
def test_pickled_weights_are_refused_without_running_them(folders, tmp_path, kind, part):
    folder = damaged(folders, tmp_path, kind, WEIGHTS[part], pickled_only)
    message = refused(kind, folder, r"only pickled weights .*\.bin.*never loads pickles.*\.safetensors")
    assert "safetensors.torch.save_file" in message and RAN == []


CONFIGS = [("sd", "unet/config.json"), ("sd", "vae/config.json"), ("sd", "text_encoder/config.json"),
           ("sd", "model_index.json"), ("sd", "scheduler/scheduler_config.json"), ("sd", "tokenizer/tokenizer.json"),
           ("iv", "image_encoder/config.json"), ("iv", "model_index.json"), ("eldm", "artdiff.json"),
           ("eldm", "encoder/config.json"), ("eldm", "vae/artdiff.json"), ("encoder", "vocab.json"),
           ("judge", "config.json")]


@pytest.mark.parametrize("kind, relative", CONFIGS)
@pytest.mark.parametrize("damage, match", [(bad_json, "is not valid JSON"), (empty, "is empty"),
                                           (a_folder, "is a folder where")])
def test_a_damaged_json_file_is_one_line_naming_it(folders, tmp_path, kind, relative, damage, match):
    refused(kind, damaged(folders, tmp_path, kind, relative, damage), match)


@pytest.mark.parametrize("kind, relative, changes, match", [
    ("sd", "unet/config.json", {"layers_per_block": 10**6}, "layers_per_block 1000000 is not a whole number"),
    ("sd", "unet/config.json", {"block_out_channels": [32, -64]}, "block_out_channels"),
    ("sd", "unet/config.json", {"block_out_channels": [8192] * 8, "layers_per_block": 32}, "B parameters"),
    ("sd", "vae/config.json", {"latent_channels": 0}, "latent_channels 0"),
    ("sd", "text_encoder/config.json", {"vocab_size": -1}, "vocab_size -1"),
    ("sd", "text_encoder/config.json", {"num_hidden_layers": "12"}, "num_hidden_layers '12'"),
    ("iv", "image_encoder/config.json", {"image_size": 10**9}, "image_size"),
    ("eldm", "encoder/config.json", {"text_config": {"hidden_size": 2**20}}, "text_config: hidden_size"),
    ("sd", "scheduler/scheduler_config.json", {"beta_end": 5}, "beta_end 5 is not a number between 0 and 1"),
    ("sd", "scheduler/scheduler_config.json", {"beta_start": 0.02}, "beta_start 0.02 is not below beta_end"),
    ("sd", "scheduler/scheduler_config.json", {"num_train_timesteps": 0}, "num_train_timesteps 0"),
    ("iv", "scheduler/scheduler_config.json", {"beta_schedule": "nope"}, "beta_schedule 'nope'"),
    ("iv", "scheduler/scheduler_config.json", {"prediction_type": "x"}, "prediction_type 'x'"),
    ("eldm", "artdiff.json", {"schedule": {"type": "discrete", "beta_end": 5}}, "beta_end 5"),
    ("eldm", "artdiff.json", {"preprocessing": {"size": -3}}, "size -3"),
])
def test_absurd_config_values_are_refused_before_building(folders, tmp_path, kind, relative, changes, match):
    refused(kind, damaged(folders, tmp_path, kind, relative, set_keys(**changes)), match)


def test_the_memory_estimate_refuses_what_cannot_fit(folders, tmp_path, monkeypatch):
    from artdiff.models import config_limits

    monkeypatch.setattr(config_limits, "available_memory", lambda: 1000)
    refused("sd", shutil.copytree(folders["sd"], tmp_path / "sd"), r"GiB but only 0\.0 GiB of memory is free")


def test_the_cli_reports_a_damaged_text_encoder_as_a_user_error(folders, tmp_path, capsys):
    folder = damaged(folders, tmp_path, "sd", WEIGHTS["text_encoder"], truncate)
    assert main(["generate", "x", "--model", str(folder), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "text_encoder/model.safetensors" in error and "bug" not in error


def test_a_junk_ckpt_with_sd_keys_is_one_line(tmp_path):
    path = tmp_path / "junk.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4),
                               "cond_stage_model.transformer.x": torch.zeros(1)}}, path)
    with pytest.raises(UserError, match="junk.ckpt"):
        load_stable_diffusion(path)


def test_loading_and_saving_print_nothing(folders, tmp_path, capfd):
    from artdiff.models import factory

    model = load_stable_diffusion(folders["sd"])
    load_image_variation(folders["iv"])
    load_embedding_model(str(folders["eldm"]))
    factory.save_diffusers_model(model.unet, tmp_path / "unet")
    factory.save_pretrained_dir(model.text_encoder, tmp_path / "text_encoder")
    factory.load_unet(tmp_path / "unet")
    factory.load_text_encoder(tmp_path / "text_encoder")
    out, err = capfd.readouterr()
    assert out == "" and err == "", err[-2000:]


def test_unreadable_files_are_user_errors(folders, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    folder = shutil.copytree(folders["sd"], tmp_path / "sd")
    (folder / WEIGHTS["unet"]).chmod(0)
    with pytest.raises(UserError, match="diffusion_pytorch_model.safetensors"):
        load_stable_diffusion(folder)


@pytest.mark.parametrize("damage, match", [
    ("int", "stores KEY as torch.int32, but model weights are floating point"),
    ("vae missing", "lacks some of the VAE's weights"), ("unet missing", "lacks some of the UNet's weights"),
    ("1d", "not that of a convolution"),
])
def test_a_damaged_single_file_is_one_line(folders, tmp_path, damage, match):
    from sd_fixtures import ldm_state_dict

    state = ldm_state_dict(folders["sd"])
    unet_key = sorted(k for k in state if k.startswith("model.diffusion_model.") and k.endswith("bias"))[0]
    if damage == "int":
        state[unet_key] = state[unet_key].to(torch.int32)
        match = match.replace("KEY", unet_key)
    elif damage.endswith("missing"):
        prefix = "first_stage_model." if damage == "vae missing" else "model.diffusion_model."
        state.pop(sorted(k for k in state if k.startswith(prefix))[3])
    else:
        state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(4)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(UserError, match=match):
        load_stable_diffusion(tmp_path / "model.safetensors", config=str(folders["sd"]), tokenizer=str(folders["sd"]))
