"""One rule for deriving a random stream from a run's seed and where it is used.

Every stream a run draws (an epoch's data order and augmentation, a rank's DataLoader workers, a
rank's global RNG for MixUp, CutMix and drop path) is seeded from the run's seed mixed with the
integers that place it (epoch, rank, step, ...), so it is the same after a resume and on any
machine, and differs wherever one of those integers differs.
"""

from __future__ import annotations

_MIX = 1_000_003  # a prime larger than any epoch, rank or step count a run reaches
_SEEDS = 2**64  # torch.manual_seed takes 64-bit seeds


def mix_seed(seed: int, *parts: int) -> int:
    """`seed` followed by `parts`, folded as h -> h * 1_000_003 + part, modulo 2**64.

    Tuples of the same length whose parts are below 1_000_003 give distinct seeds (before the
    modulo), and the result is a valid `torch.manual_seed` argument whatever the number of parts.
    """
    value = seed
    for part in parts:
        value = value * _MIX + part
    return value % _SEEDS
