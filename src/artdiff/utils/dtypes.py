"""The precision names artdiff accepts (fp16, bf16, fp32) and their torch dtypes: the one map every module uses."""

from __future__ import annotations

import torch

DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
