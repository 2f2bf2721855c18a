"""Caption-free CCLD (image embeddings) beside caption training (text embeddings) at the same step of one recipe.

Both runs are `artdiff train embedding-ldm` folders that differ only in --condition. For each, the EMA weights
of `checkpoints/step-N` (or the finished model/ with --step 0) become a model directory, which
`artdiff evaluate --model` then scores from text prompts at generate's defaults. Prints one JSON row per run.
Usage: python benchmarks/ccld_condition_reference.py RUN_IMAGE RUN_TEXT [--step 2000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from safetensors.torch import load_file

from artdiff.config import from_dict, load_yaml
from artdiff.core.ema import EMA
from artdiff.evaluate.model_eval import ModelEvalConfig, evaluate_model
from artdiff.train.embedding_ldm import EmbeddingLDMConfig, EmbeddingLDMTask


def model_at_step(run: Path, step: int, out: Path) -> Path:
    """The run's model directory at `step` (its EMA weights), written under `out`; step 0: the finished model."""
    if step == 0:
        return run / "model"
    checkpoint = run / "checkpoints" / f"step-{step}"
    if not (checkpoint / "state.json").is_file():
        raise SystemExit(f"{checkpoint} is not a finished checkpoint")
    cfg = from_dict(EmbeddingLDMConfig, load_yaml(run / "config.yaml"), where=str(run / "config.yaml"))
    cfg.progress = False
    task = EmbeddingLDMTask(cfg)  # reads the cached latents and embeddings; builds the UNet
    params = task.trainable()
    ema = EMA(params)
    ema.load_state_dict(load_file(str(checkpoint / "ema.safetensors")))
    ema.copy_to(params)
    target = out / f"{run.name}-step-{step}"
    task.save(task.model, target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="embedding-ldm run folders (e.g. image, then text)")
    parser.add_argument("--step", type=int, default=0, help="checkpoint step to compare (0: the finished models)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the exported model directories")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        for run in args.runs:
            model = model_at_step(run, args.step, out)
            condition = load_yaml(run / "config.yaml").get("condition", "image")
            report = evaluate_model(ModelEvalConfig(model=str(model))).to_json()
            print(json.dumps({"run": str(run), "condition": condition, "step": args.step or "final", **report}))


if __name__ == "__main__":
    main()
