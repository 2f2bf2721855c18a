"""`artdiff train textual-inversion`: learn token vectors for a style or subject (Gal et al. 2022), A1111's recipe.

The SD model stays frozen. The one trained tensor, `vectors` (N, D), lives in a tiny module (checkpoints hold
N*D floats); the text encoder's token embedding is wrapped so the learned ids read their rows from `vectors`
inside the forward while every other row comes from the untouched table. A new token is added as diffusers'
loader adds it (`tok`, `tok_1`, ...) and prompts are expanded the same way, so training and `artdiff generate
--embedding` see the same ids. --override-token WORD learns the rows of an existing word instead (A1111's
shadowing, made explicit): N is the word's token count and its current rows are the start.
Recipe: AUTOMATIC1111 `modules/textual_inversion/{textual_inversion,dataset,learn_schedule}.py` (init text
spread over the vectors, [name]/[filewords] templates, schedule strings, AdamW without decay, cached latents).
NaN guard: the loop skips a non-finite step; in addition, a non-finite loss under fp16/bf16 autocast is
recomputed at once with autocast disabled (fp32), and the run stays in fp32 from then on (logged as `fp32`,
recorded as `fp32_from_step` in artdiff.json).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from artdiff.config import to_dict
from artdiff.core.schedules import alphas_cumprod, ddpm_betas
from artdiff.data.dataset import ImageDataset
from artdiff.errors import UserError
from artdiff.generate.prompt_weighting import (
    empty_chunk,
    encode_prompt_pair,
    encode_weighted,
    tokenize_weighted,
)
from artdiff.generate.sd_sample import sample_sd
from artdiff.models import factory
from artdiff.models.model_info import ModelInfo
from artdiff.models.stable_diffusion import load_stable_diffusion
from artdiff.models.textual_inversion_files import (
    TextualInversion,
    add_textual_inversion,
    expand_tokens,
    save_a1111_pt,
    save_a1111_safetensors,
    save_diffusers_embeds,
    token_names,
)
from artdiff.train.loop import LoopResult, run_training
from artdiff.train.sd_latents import cached_sd_latents
from artdiff.train.textual_inversion_config import MAX_VECTORS, TextualInversionConfig, file_stem  # noqa: F401 - the options live there, for a fast --help
from artdiff.train.ti_templates import FILEWORDS, NAME, fill_template, resolve_template, uses

PREVIEW_STEPS, PREVIEW_CFG = 20, 7.5  # A1111 previews use 20 steps


def initial_vectors(tokenizer: Any, weight: torch.Tensor, init_text: str, *, n: int) -> torch.Tensor:
    """A1111's create_embedding: the first n tokens of init_text spread over n vectors; zeros for ''."""
    vectors = torch.zeros(n, weight.shape[1])
    if not init_text:
        return vectors
    ids = tokenizer(init_text, max_length=n, truncation=True, add_special_tokens=False)["input_ids"]
    if not ids:
        raise UserError(f"--init-text {init_text!r} has no tokens; give words, or '' to start from zeros")
    embedded = weight.detach()[ids].float()  # (k, D), k <= n
    for i in range(n):
        vectors[i] = embedded[i * len(ids) // n]  # each token repeated over consecutive vectors when k < n
    return vectors


class TokenVectors(torch.nn.Module):
    """The trained tensor alone, so checkpoints, EMA and the optimizer hold N x D floats."""

    def __init__(self, init: torch.Tensor) -> None:
        super().__init__()
        self.vectors = torch.nn.Parameter(init.clone())  # (N, D)

    def forward(self) -> torch.Tensor:
        return self.vectors


class EmbeddingWithVectors(torch.nn.Module):
    """A token embedding whose rows for `ids` come from the vectors in use; all other rows from the frozen table."""

    def __init__(self, base: torch.nn.Embedding, ids: list[int]) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("ids", torch.tensor(ids, dtype=torch.long), persistent=False)
        self._current: list[torch.Tensor] = []  # a list, so a Parameter put here is not registered as ours

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight  # callers read .weight for the device and width

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.base(input_ids)  # (B, L, D)
        if not self._current:
            return out
        match = input_ids.unsqueeze(-1) == self.ids.to(input_ids.device)  # (B, L, N)
        rows = match.to(out.dtype) @ self._current[0].to(out.device, out.dtype)  # (B, L, D): one-hot picks a row
        return torch.where(match.any(-1, keepdim=True), rows, out)

    @contextlib.contextmanager
    def using(self, vectors: torch.Tensor) -> Iterator[None]:
        """Within the block, the learned rows read from `vectors`."""
        self._current[:] = [vectors]
        try:
            yield
        finally:
            self._current.clear()


class TextualInversionTask:
    """Frozen SD, cached latents, and one (N, D) tensor trained through the text encoder."""

    def __init__(self, cfg: TextualInversionConfig) -> None:
        self.cfg = cfg
        self.sd = load_stable_diffusion(cfg.model)
        for network in (self.sd.unet, self.sd.vae, self.sd.text_encoder):
            network.requires_grad_(False).eval()
        if cfg.gradient_checkpointing:
            self.sd.unet.enable_gradient_checkpointing()  # diffusers checkpoints whenever grad is enabled
        self.template = resolve_template(cfg.template)
        self.word = cfg.override_token.strip() if cfg.override_token else None
        self.token = cfg.token or self.word
        ids, self.init = self._override_rows() if self.word else self._new_token()
        self.names = token_names(self.token, len(ids)) if not self.word else [self.word]
        self.embedding = EmbeddingWithVectors(self.sd.text_encoder.get_input_embeddings(), ids)
        self.sd.text_encoder.set_input_embeddings(self.embedding)
        self.model = TokenVectors(self.init)
        self.size = cfg.size or self.sd.unet.config.sample_size * self.sd.vae_factor
        if self.size % self.sd.vae_factor:
            raise UserError(f"--size {self.size} is not a multiple of {self.sd.vae_factor}, which this model needs")
        self.data = ImageDataset(cfg.data, size=self.size)
        self.captions = [str(r.get("caption") or "") for r in self.data.records]
        if uses(self.template, FILEWORDS) and not any(self.captions):
            raise UserError(f"template {cfg.template!r} uses [filewords] but {cfg.data} has no captions; "
                            "use --template style or subject")
        self.features = self._cache()
        self.latents = self._fixed_latents()
        s = self.sd.schedule
        self.alphas_bar = alphas_cumprod(ddpm_betas(s["beta_schedule"], num_train_timesteps=s["num_train_timesteps"],
                                                    beta_start=s["beta_start"], beta_end=s["beta_end"])).float()
        self.fp32_from_step: int | None = None
        self._device = torch.device("cpu")

    def _new_token(self) -> tuple[list[int], torch.Tensor]:
        """Add token, token_1, ... with A1111's init-text start; a word the vocabulary has is an error."""
        tokenizer, n = self.sd.tokenizer, self.cfg.vectors or 1
        vocab = tokenizer.get_vocab()
        taken = [name for name in token_names(self.token, n) if name in vocab or f"{name.lower()}</w>" in vocab]
        if taken:
            raise UserError(f"token {taken[0]!r} is already in the tokenizer's vocabulary; pick a new word such as "
                            f"'<{file_stem(self.token) or 'my-style'}-style>', or use --override-token "
                            f"{taken[0]} to retrain that word")
        weight = self.sd.text_encoder.get_input_embeddings().weight
        init_text = "*" if self.cfg.init_text is None else self.cfg.init_text
        init = initial_vectors(tokenizer, weight, init_text, n=n)
        names = add_textual_inversion(tokenizer, self.sd.text_encoder,
                                      TextualInversion(self.token, init, "artdiff"))
        return tokenizer.convert_tokens_to_ids(names), init

    def _override_rows(self) -> tuple[list[int], torch.Tensor]:
        """The word's token ids and their current rows: what --override-token learns anew."""
        ids = self.sd.tokenizer(self.word, add_special_tokens=False)["input_ids"]
        if not ids:
            raise UserError(f"--override-token {self.word!r} has no tokens; give a word that prompts use")
        if len(ids) > MAX_VECTORS or len(set(ids)) != len(ids):
            raise UserError(f"--override-token {self.word!r} is {len(ids)} tokens, over {MAX_VECTORS} or with a "
                            f"repeat; pick a word of at most {MAX_VECTORS} distinct tokens")
        if self.cfg.vectors not in (None, len(ids)):
            raise UserError(f"--override-token {self.word!r} is {len(ids)} token(s), so it learns {len(ids)} "
                            f"vector(s); drop --vectors {self.cfg.vectors}")
        return list(ids), self.sd.text_encoder.get_input_embeddings().weight.detach()[ids].float().clone()

    def _cache(self) -> dict[str, torch.Tensor]:
        """Posterior mean and std of every image's latent (scaled), computed once per data/VAE/size."""
        return cached_sd_latents(self.sd, self.data, self.cfg.data, self.size, progress=self.cfg.progress)

    def _fixed_latents(self) -> torch.Tensor | None:
        """A1111's "once" (one draw per image, here seeded by image) and "deterministic" (the mean) latents."""
        mean, std = self.features["latent_mean"], self.features["latent_std"]
        if self.cfg.latent_sampling == "deterministic":
            return mean
        if self.cfg.latent_sampling == "once":
            noise = [torch.randn(mean.shape[1:], generator=torch.Generator().manual_seed(self.cfg.seed * 7919 + i))
                     for i in range(len(mean))]
            return mean + std * torch.stack(noise)
        return None

    def trainable(self) -> list[torch.nn.Parameter]:
        return [self.model.vectors]

    def dataset_size(self) -> int:
        return len(self.data)

    def batch(self, indices: list[int]) -> dict:
        out = {"captions": [self.captions[i] for i in indices]}
        if self.latents is not None:
            return out | {"latent": self.latents[indices]}
        return out | {"latent_mean": self.features["latent_mean"][indices],
                      "latent_std": self.features["latent_std"][indices]}

    def loss(self, model: torch.nn.Module, batch: dict, seeds: list[int], step: int) -> torch.Tensor:
        vectors = model()  # through the (possibly wrapped) module, so gradients sync across processes
        self._place(vectors.device)
        if self.fp32_from_step is None:
            value = self._loss(vectors, batch, seeds)
            if not _reduced_precision(vectors.device) or bool(torch.isfinite(value)):
                return value
            self.fp32_from_step = step
            print(f"textual inversion: non-finite loss under reduced precision at step {step}; continuing in fp32",
                  file=sys.stderr)
        with torch.autocast(vectors.device.type, enabled=False):  # fp32 from the first non-finite loss on
            return self._loss(vectors, batch, seeds)

    def _loss(self, vectors: torch.Tensor, batch: dict, seeds: list[int]) -> torch.Tensor:
        """Noise the latents at a random timestep and regress the UNet's target, conditioned on template prompts.

        x0: clean latents; eps: noise; a = alphas_bar[t]; x_t = sqrt(a) x0 + sqrt(1 - a) eps;
        target: eps, v = sqrt(a) eps - sqrt(1 - a) x0, or x0, by the model's parameterization.
        """
        device = vectors.device
        gens = [torch.Generator().manual_seed(seed) for seed in seeds]
        t = torch.stack([torch.randint(0, len(self.alphas_bar), (), generator=g) for g in gens])
        if "latent" in batch:  # "once" or "deterministic"
            x0 = batch["latent"]
        else:  # "random": a new posterior sample each time
            draws = [torch.randn(batch["latent_mean"].shape[1:], generator=g) for g in gens]
            x0 = batch["latent_mean"] + batch["latent_std"] * torch.stack(draws).to(device)
        eps = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in gens]).to(device)  # (B, 4, h, w)
        a = self.alphas_bar[t].to(device)[:, None, None, None]
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        prompts = [self._prompt(caption, seed) for caption, seed in zip(batch["captions"], seeds, strict=True)]
        cond = self._encode(prompts, vectors)  # (B, 77k, D)
        prediction = self.sd.unet(x_t, t.to(device), encoder_hidden_states=cond).sample
        target = {"eps": eps, "v": a.sqrt() * eps - (1 - a).sqrt() * x0, "x0": x0}[self.sd.parameterization]
        return F.mse_loss(prediction.float(), target.float())

    def _prompt(self, caption: str, seed: int) -> str:
        """A template line filled with this example's caption, the token expanded to its N ids."""
        text = fill_template(self.template, self.token if not self.word else self.word, caption, random.Random(seed),
                             shuffle_tags=self.cfg.shuffle_tags, tag_dropout=self.cfg.tag_dropout)
        return text if self.word else expand_tokens(text, self.token, len(self.names))

    def _encode(self, prompts: list[str], vectors: torch.Tensor) -> torch.Tensor:
        """A1111-style prompt encoding (emphasis, 75-token chunks), padded to the batch's longest prompt."""
        tokenizer = self.sd.tokenizer
        chunks = [tokenize_weighted(tokenizer, prompt) for prompt in prompts]
        count = max(len(c) for c in chunks)
        with self.embedding.using(vectors):
            return torch.cat([encode_weighted(self.sd.text_encoder, c + [empty_chunk(tokenizer)] * (count - len(c)))
                              for c in chunks])

    def _place(self, device: torch.device) -> None:
        """Move the frozen networks to the training device once (the loop moves only the trained module)."""
        if device != self._device:
            for network in (self.sd.unet, self.sd.vae, self.sd.text_encoder):
                network.to(device)
            self._device = device

    @torch.no_grad()
    def sample(self, model: torch.nn.Module) -> torch.Tensor | None:
        """Two fixed-seed previews of --preview-prompt, only when --sample-every is set."""
        if not self.cfg.sample_every:
            return None
        prompt = self.cfg.preview_prompt.replace(NAME, self.word or self.token)
        if not self.word:
            prompt = expand_tokens(prompt, self.token, len(self.names))
        with self.embedding.using(model.vectors.detach()):
            cond, uncond = encode_prompt_pair(self.sd.text_encoder, self.sd.tokenizer, prompt, "")
        return sample_sd(self.sd, cond, uncond, seeds=[self.cfg.seed, self.cfg.seed + 1], height=self.size,
                         width=self.size, steps=PREVIEW_STEPS, cfg_scale=PREVIEW_CFG)

    def drift(self) -> torch.Tensor:
        """L2 distance of each vector from its start, (N,)."""
        return (self.model.vectors.detach().float().cpu() - self.init).norm(dim=1)

    def log_extra(self) -> dict[str, float]:
        """Per-vector drift (and whether training fell back to fp32), for the loop's log."""
        extra = {f"drift_{i}": float(d) for i, d in enumerate(self.drift())}
        return extra | ({"fp32": 1.0} if self.fp32_from_step is not None else {})

    def token_table(self) -> torch.Tensor:
        """The token-embedding table as prompts see it now: the frozen rows with the learned ones written in."""
        table = self.embedding.base.weight.detach().float().cpu().clone()
        table[self.embedding.ids.cpu()] = self.model.vectors.detach().float().cpu()
        return table

    def save(self, model: torch.nn.Module, directory: Path) -> None:
        """<token>.pt (A1111), <token>.safetensors (kohya/A1111), learned_embeds.safetensors (diffusers), artdiff.json."""
        vectors = model.vectors.detach().float().cpu().clone()
        ti = TextualInversion(self.token, vectors, "artdiff", step=self.cfg.max_steps, override_word=self.word)
        tmp = directory.with_name(f".{directory.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        stem = file_stem(self.token)
        files = [save_a1111_safetensors(tmp / f"{stem}.safetensors", ti).name,
                 save_diffusers_embeds(tmp / "learned_embeds.safetensors", ti).name]
        if not self.word:  # A1111's .pt has no field for an override word (see save_a1111_pt)
            files.append(save_a1111_pt(tmp / f"{stem}.pt", ti, checkpoint_hash=self.sd.hash,
                                       checkpoint_name=Path(self.sd.path).name).name)
        extra = {"base_model": str(Path(self.sd.path).resolve()), "base_model_hash": self.sd.hash,
                 "token": self.token, "tokens": self.names if not self.word else None, "vectors": len(vectors),
                 "override_word": self.word, "template": self.cfg.template, "step": self.cfg.max_steps,
                 "files": files, "fp32_from_step": self.fp32_from_step}
        factory.write_model_info(tmp, ModelInfo(kind="textual-inversion", recipe=to_dict(self.cfg), extra=extra))
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)


def _reduced_precision(device: torch.device) -> bool:
    """True inside fp16 or bf16 autocast on this device type."""
    kind = device.type
    return torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) in (torch.float16, torch.bfloat16)


def train_textual_inversion(cfg: TextualInversionConfig) -> LoopResult:
    """Train the vectors and write run_dir/model with the embedding in A1111, kohya and diffusers formats.

    Args:
        cfg: the method's options (see TextualInversionConfig) and the loop's.

    Returns:
        The loop's result; `model_dir` holds the embedding files and artdiff.json.
    """
    return run_training(cfg, TextualInversionTask(cfg))
