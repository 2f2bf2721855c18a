"""The tokenizer is a pure function of its captions: the same files in every process (issue 12, item 6)."""

import os
import random
import subprocess
import sys

from artdiff.models.tokenizer import train_merges

# Many equal pair counts: the merge order then depends on how ties are broken, which must not be by hash order.
_RNG = random.Random(0)
_WORDS = ["".join(_RNG.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(_RNG.randint(3, 9))) for _ in range(300)]
CAPTIONS = [" ".join(_RNG.choice(_WORDS) for _ in range(6)) for _ in range(400)]

_BUILD = """
import sys
from artdiff.models.tokenizer import build_tokenizer
captions = sys.stdin.read().splitlines()
build_tokenizer(captions, sys.argv[1], vocab_size=4096)
"""


def _build_in_subprocess(out, hash_seed: str) -> dict[str, bytes]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    subprocess.run([sys.executable, "-c", _BUILD, str(out)], input="\n".join(CAPTIONS), text=True, env=env,
                   check=True, timeout=60)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_two_processes_with_different_hash_seeds_write_identical_files(tmp_path):
    first = _build_in_subprocess(tmp_path / "a", "1")
    second = _build_in_subprocess(tmp_path / "b", "2")
    assert first.keys() == second.keys() and len(first) == 4
    assert first == second


def test_equal_counts_are_broken_by_the_pair_itself():
    # Every pair of these words occurs once: the order must follow the pairs, not the input order or a hash.
    merges = train_merges(["xy ab", "ab xy"], vocab_size=514 + 2, min_frequency=1)
    assert merges == train_merges(["ab xy", "xy ab"], vocab_size=514 + 2, min_frequency=1)
    assert merges[0] == ("a", "b</w>")
