"""Seeded, deterministic splits: how many to take, and which.

An amount is either a fraction (``0.1``, a float in [0, 1]) or a count (``145``, an int).
Fractions are floored (with a small tolerance so ``0.3 * 1450`` gives 435, not 434), which
reproduces the paper's counts: 145/435 of 1,450, 207/622 of 2,075, 2,075 of 2,594.
Each purpose (val, labeled, test) draws from its own seeded stream, so changing one amount
never reshuffles the others, and a smaller labeled set is a subset of a larger one.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from decseg.errors import DataError
from decseg.io import atomic_write_text

Amount = Union[int, float]

# Separate random streams per purpose.
PURPOSE = {"test": 1, "val": 2, "labeled": 3}


def parse_amount(text: str | int | float, option: str = "--labeled") -> Amount:
    """``"0.1"`` -> 0.1 (fraction), ``"145"`` -> 145 (count)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value: Amount = text
    else:
        s = str(text).strip()
        try:
            value = int(s)
        except ValueError:
            try:
                value = float(s)
            except ValueError:
                raise DataError(f"{option} {text!r}: give a fraction like 0.1 or a count like 145") from None
    if isinstance(value, float) and not (0.0 <= value <= 1.0):
        raise DataError(f"{option} {text!r}: a fraction must lie in [0, 1]; for a count write an integer")
    if isinstance(value, int) and value < 0:
        raise DataError(f"{option} {text!r}: must not be negative")
    return value


def resolve_count(amount: Amount, total: int, option: str = "--labeled") -> int:
    """How many of ``total`` items ``amount`` means."""
    if isinstance(amount, float):
        return int(math.floor(amount * total + 1e-6))
    if amount > total:
        raise DataError(f"{option} {amount}: only {total} images are available")
    return int(amount)


def permutation(ids: Sequence[str], seed: int, purpose: str) -> list[str]:
    """A seeded shuffle of ``sorted(ids)``: independent of the order the files were listed in."""
    rng = np.random.default_rng([int(seed), PURPOSE[purpose]])
    ordered = sorted(ids)
    return [ordered[i] for i in rng.permutation(len(ordered))]


def take(ids: Sequence[str], count: int, seed: int, purpose: str) -> tuple[list[str], list[str]]:
    """(chosen, rest), both sorted; the chosen ones are the head of a seeded permutation."""
    perm = permutation(ids, seed, purpose)
    return sorted(perm[:count]), sorted(perm[count:])


def labeled_split(pool: Sequence[str], labeled: Amount, seed: int, base: int | None = None
                  ) -> tuple[list[str], list[str], str]:
    """(labeled, unlabeled, note) over ``pool``.

    A fraction is taken of ``base`` (the whole training pool before val was carved out, so
    ``--labeled 0.1`` of 1,450 is 145 whatever ``--val`` is). A fraction that asks for more
    than ``pool`` holds is capped (``--labeled 1.0`` = every non-val image); a count that does
    not fit is an error.
    """
    base = len(pool) if base is None else base
    if isinstance(labeled, float):
        k = resolve_count(labeled, base)
        note = f"{labeled} of {base}"
        if k > len(pool):
            k = len(pool)
            note += f", capped to the {len(pool)} non-validation images"
    else:
        if labeled > len(pool):
            raise DataError(f"--labeled {labeled}: only {len(pool)} training images remain after the "
                            f"validation split; lower --labeled or --val")
        k, note = labeled, f"{labeled} (count)"
    lab, unl = take(pool, k, seed, "labeled")
    return lab, unl, note


def write_id_list(path: Path, ids: Sequence[str]) -> None:
    for i in ids:
        if "\n" in i or "\r" in i:
            raise DataError(f"file name {i!r} contains a line break; rename it")
    atomic_write_text(path, "".join(f"{i}\n" for i in ids))
