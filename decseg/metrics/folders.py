"""Pairing prediction files with GT files, and scoring them in worker processes."""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from decseg.errors import DataError
from decseg.files import IMAGE_EXTENSIONS, index_by_stem

T = TypeVar("T")


class EvaluationWarning(UserWarning):
    """Something the evaluator handled but the user should know (resizing, empty GT, ...)."""


def warn_unmatched(label: str, unmatched: list[str]) -> None:
    if unmatched:
        warnings.warn(f"{label}: {len(unmatched)} prediction(s) have no GT and were ignored: "
                      f"{', '.join(unmatched[:5])}" + (" ..." if len(unmatched) > 5 else ""),
                      EvaluationWarning, stacklevel=3)


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def matched_files(pred_dir: str | Path, gt_dir: str | Path) -> tuple[dict[str, Path], dict[str, Path], list[str]]:
    """({stem: GT file}, {stem: prediction file} for every GT stem, unmatched prediction names).

    Every GT file needs a prediction (error naming the missing ones); predictions without a GT
    file are returned for a warning. Other files (a README, a .mat) are passed over.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not gt_dir.is_dir():
        raise DataError(f"GT folder {gt_dir} does not exist")
    if not pred_dir.is_dir():
        raise DataError(f"prediction folder {pred_dir} does not exist")
    gts = index_by_stem(gt_dir, "GT files", strict=False)
    if not gts:
        raise DataError(f"GT folder {gt_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    preds = index_by_stem(pred_dir, "prediction files", strict=False)
    missing = [s for s in gts if s not in preds]
    if missing:
        names = ", ".join(f"{s}.png" for s in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"{pred_dir}: {len(missing)} prediction(s) missing for GT files in {gt_dir}: "
                        f"{names}; predict every test image before evaluating")
    unmatched = sorted(preds[s].name for s in preds if s not in gts)
    return gts, {s: preds[s] for s in gts}, unmatched


def parallel_map(fn: Callable[..., T], arg_lists: Sequence[Sequence], workers: int | None) -> list[T]:
    """[fn(*args) for args in zip(*arg_lists)], in worker processes when there are enough items.

    ``fn`` must be a module-level function. Results keep input order and do not depend on the
    number of workers.
    """
    n = len(arg_lists[0]) if arg_lists else 0
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers == 1 or n < 8:  # starting processes costs more than a few images
        return [fn(*args) for args in zip(*arg_lists)]
    # spawn: safe even when the caller has torch threads running.
    with ProcessPoolExecutor(max_workers=min(workers, n), mp_context=get_context("spawn")) as ex:
        chunk = max(1, n // (4 * workers))
        return list(ex.map(fn, *arg_lists, chunksize=chunk))


def set_label(gt_dir: Path) -> str:
    """The set's name for messages: the mask folder's parent when it is called ``masks``."""
    return gt_dir.parent.name if gt_dir.name == "masks" else gt_dir.name
