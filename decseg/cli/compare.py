"""``decseg compare``: methods x label ratios x seeds under one protocol, with a report.

    decseg compare --data DATA --methods supervised,decseg,unimatch,full --labeled 0.05,0.1,0.3
                   --seeds 3 --out DIR [--config FILE] [--set K=V ...] [--gpus 0,1] [--nproc-per-cell N]

Every (method, ratio, seed) is one cell, ``DIR/<method>/<ratio>/seed<k>``: an ordinary
``decseg train`` run folder (config.yaml, checkpoints, log.jsonl, TensorBoard, train_stats.json)
that ``decseg train --data DATA --out CELL --resume`` continues on its own. After training,
the cell's ``best.pt`` (picked on the val split, never on a test set) predicts every test set
into ``CELL/pred`` and ``CELL/metrics.json`` holds ``decseg evaluate``'s numbers;
``CELL/cell.json`` is written last and marks the cell finished.

The split of a ratio and seed is drawn once from the data's training pool and written as
``DIR/splits/<ratio>/seed<k>/{labeled,unlabeled}.txt``; every method of that ratio and seed
trains on it (``data.splits``). A ratio counts images, or, for slices of volumes
(``DATA/train/volumes.json``), volumes (grouped by patient where the volumes name one): all
slices of a labeled volume are labeled. Seed k is also ``train.seed``. The method entry ``full`` is
the fully supervised upper bound: ``train.method=supervised`` on every training image with a
mask (``DIR/splits/all``), with the same settings as the ``supervised`` cells, so that only the
number of labels differs. ``--set METHOD:KEY=VALUE`` changes a key for one method's cells only
(e.g. ``full:train.batch_labeled=6``, the ``polyp_full`` preset's batch).

A rerun skips finished cells, resumes interrupted ones (``last.pt`` without ``cell.json``)
and refuses a cell whose stored config differs from the one asked for. A cell held by a live
``decseg train`` (its run lock) is reported and skipped; the report then covers the others
and the command exits with 2, so run it again when that run has ended.

Devices: cells run one at a time in this process by default; ``--gpus 0,1,2,3`` runs one
``decseg train`` subprocess per listed GPU (``CUDA_VISIBLE_DEVICES``) from a queue of cells;
``--nproc-per-cell N`` runs each cell's training under ``torchrun --nproc_per_node=N`` (with
``--gpus``, each cell gets N of the listed GPUs).
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from decseg.cli.main import add_set_arg
from decseg.errors import ConfigError, DataError, DecsegError

FULL = "full"
ALL_LABELS = "all"  # the ratio folder of the upper bound
CELL_RESULT = "cell.json"
# config keys that may differ between a cell's stored config and a rerun: where the cell runs,
# and the split folder's path (its content is checked against the data instead, so a moved
# comparison folder still continues)
EXECUTION_KEYS = {("train", "device"), ("data", "num_workers"), ("data", "splits")}


class CellsBusy(DecsegError):
    """Some cells are held by another live training process; the report covers the others."""


@dataclass
class Cell:
    method: str  # a train.method or FULL
    ratio: str  # the --labeled entry as given, or ALL_LABELS
    seed: int
    dir: Path
    splits: Path
    overrides: list[str]
    labeled_fraction: float = float("nan")
    n_labeled: int = 0
    state: str = "new"  # new | resume | evaluate | done
    config: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.method}/{self.ratio}/seed{self.seed}"


# -- arguments -------------------------------------------------------------------------------

def parse_methods(text: str) -> list[str]:
    from decseg.config import METHODS

    names = [m.strip() for m in str(text).split(",") if m.strip()]
    if not names:
        raise ConfigError("--methods: name at least one method, e.g. --methods supervised,decseg,full")
    for m in names:
        if m not in METHODS and m != FULL:
            raise ConfigError(f"--methods: {m!r} is not one of: {', '.join(METHODS)}, {FULL} "
                              f"(the fully supervised upper bound)")
    if len(set(names)) != len(names):
        raise ConfigError(f"--methods {text}: lists a method twice")
    return names


def parse_ratios(text: str) -> list[tuple[str, int | float]]:
    from decseg.data.splits import parse_amount

    out = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        amount = parse_amount(part, "--labeled")
        if amount == 0:
            raise DataError(f"--labeled {part}: every ratio needs labeled images (a fraction > 0 or a count >= 1)")
        out.append((part, amount))
    if not out:
        raise ConfigError("--labeled: give at least one label ratio (fractions like 0.1 or counts like 145)")
    if len({a for _, a in out}) != len(out) or len({t for t, _ in out}) != len(out):
        raise ConfigError(f"--labeled {text}: lists a ratio twice")
    return out


def parse_gpus(text: str | None) -> list[str] | None:
    if text is None:
        return None
    ids = [g.strip() for g in text.split(",") if g.strip()]
    if not ids or any(not g.isdigit() for g in ids) or len(set(ids)) != len(ids):
        raise ConfigError(f"--gpus {text!r}: give distinct GPU indices separated by commas, e.g. --gpus 0,1,2,3")
    return ids


# -- splits ----------------------------------------------------------------------------------

def _write_or_check_split(folder: Path, labeled: list[str], unlabeled: list[str], info: dict) -> None:
    """Write the split once; a split already there must be the one drawn now."""
    from decseg.data.layout import read_id_list
    from decseg.data.splits import write_id_list
    from decseg.io import atomic_write_text

    lab_file, unl_file = folder / "labeled.txt", folder / "unlabeled.txt"
    if lab_file.is_file() and unl_file.is_file():
        if read_id_list(lab_file) != labeled or read_id_list(unl_file) != unlabeled:
            raise DataError(f"{folder}: the split written by an earlier run differs from the one drawn now "
                            f"from the data (did the training pool change?); use another --out, or remove "
                            f"{folder.parent.parent} and the cells that used it")
        return
    folder.mkdir(parents=True, exist_ok=True)
    # the lists first, split.json last: a split is complete when split.json exists
    write_id_list(lab_file, labeled)
    write_id_list(unl_file, unlabeled)
    atomic_write_text(folder / "split.json", json.dumps(info, indent=2) + "\n")


def split_units(layout) -> tuple[str, dict[str, list[str]]]:
    """What a label ratio counts: ("image", {id: [id]}), or, for slices of volumes
    (``DATA/train/volumes.json``), ("volume", {patient or volume: [its slice IDs]}), so that a
    volume's slices are labeled together, as a volume dataset's labels are given."""
    pool = set(layout.train_ids())
    path = layout.root / "train" / "volumes.json"
    if path.is_file():
        try:
            volumes = json.loads(path.read_text(encoding="utf-8"))["volumes"]
            units: dict[str, list[str]] = {}
            for vid, v in volumes.items():
                units.setdefault(str(v.get("group", vid)), []).extend(i for i in v["slices"] if i in pool)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise DataError(f"{path}: cannot read its volumes ({e}); prepare the data again") from None
        grouped = {i for ids in units.values() for i in ids}
        units.update({i: [i] for i in pool - grouped})  # 2D images beside the volumes
        return "volume", {k: sorted(v) for k, v in units.items() if v}
    return "image", {i: [i] for i in pool}


def write_splits(layout, out: Path, ratios: list[tuple[str, int | float]], seeds: list[int],
                 with_full: bool) -> dict[tuple[str, int], dict]:
    """Draw and write every (ratio, seed) split; returns {(ratio, seed): split info}."""
    from decseg.data.splits import labeled_split

    pool = layout.train_ids()
    with_masks = [i for i in pool if layout.train_item(i).mask is not None]
    if not with_masks:
        raise DataError(f"{layout.root / 'train' / 'masks'}: no training image has a mask; compare needs labels")
    unit, units = split_units(layout)
    masked = set(with_masks)
    labelable = sorted(u for u, ids in units.items() if any(i in masked for i in ids))
    infos = {}
    for text, amount in ratios:
        for seed in seeds:
            chosen_units, _, note = labeled_split(labelable, amount, seed, base=len(units))
            lab = sorted(i for u in chosen_units for i in units[u] if i in masked)
            if not lab:
                raise DataError(f"--labeled {text}: gives 0 of the {len(units)} training {unit}s; raise it")
            chosen = set(lab)
            unl = [i for i in pool if i not in chosen]
            info = {"ratio": text, "seed": seed, "labeled": len(lab), "unlabeled": len(unl),
                    "pool": len(pool), "unit": unit, "labeled_units": len(chosen_units), "units": len(units),
                    "labeled_fraction": len(chosen_units) / len(units), "rule": f"{note} {unit}s",
                    "data": str(layout.root)}
            _write_or_check_split(out / "splits" / text / f"seed{seed}", lab, unl, info)
            infos[(text, seed)] = info
    if with_full:
        unl = [i for i in pool if layout.train_item(i).mask is None]
        info = {"ratio": ALL_LABELS, "labeled": len(with_masks), "unlabeled": len(unl), "pool": len(pool),
                "labeled_fraction": len(with_masks) / len(pool), "rule": "every training image with a mask",
                "data": str(layout.root)}
        _write_or_check_split(out / "splits" / ALL_LABELS, with_masks, unl, info)
        infos[(ALL_LABELS, -1)] = info
    return infos


# -- cells -----------------------------------------------------------------------------------

def _config_dict(cfg) -> dict:
    d = cfg.to_dict()
    for section, key in EXECUTION_KEYS:
        d[section].pop(key, None)
    return d


def _differences(a: dict, b: dict) -> list[str]:
    return [f"{s}.{k}: {a[s].get(k)!r} -> {b[s].get(k)!r}" for s in a for k in a[s]
            if a[s].get(k) != b.get(s, {}).get(k)]



def plan_cells(data: Path, out: Path, methods: list[str], ratios, seeds: list[int], config: str | None,
               overrides: Sequence[str], infos: dict, classes: int) -> list[Cell]:
    """Every cell with its validated config and its state (new, resume, evaluate, done)."""
    from decseg import load_config
    from decseg.methods import check_method_config

    shared, own = split_overrides(overrides, methods)
    load_config(config, [f"data.classes={classes}", *shared])  # the common part names its own errors
    cells = []
    for method in methods:
        for text, _ in ([(ALL_LABELS, None)] if method == FULL else ratios):
            for seed in seeds:
                if method == FULL:
                    splits = out / "splits" / ALL_LABELS
                    info = infos[(ALL_LABELS, -1)]
                    extra = ["train.method=supervised", "train.semi=false"]
                else:
                    splits = out / "splits" / text / f"seed{seed}"
                    info = infos[(text, seed)]
                    extra = [f"train.method={method}"]
                cell_overrides = [f"data.classes={classes}", *shared, *extra, *own.get(method, []),
                                  f"train.seed={seed}", f"data.splits={splits.resolve()}"]
                cell = Cell(method, text, seed, out / method / text / f"seed{seed}", splits, cell_overrides,
                            labeled_fraction=info["labeled_fraction"], n_labeled=info["labeled"])
                try:
                    cfg = load_config(config, cell_overrides)
                    check_method_config(cfg)
                except ConfigError as e:
                    raise ConfigError(f"cell {cell.name}: {e}") from None
                cell.config = cfg.to_dict()
                cell.state = _cell_state(cell, cfg)
                cells.append(cell)
    return cells


def split_overrides(overrides: Sequence[str], methods: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """``KEY=VALUE`` for every cell and ``METHOD:KEY=VALUE`` for one method's cells."""
    shared: list[str] = []
    own: dict[str, list[str]] = {}
    for text in overrides:
        head, sep, rest = text.partition(":")
        if sep and "=" not in head and "." not in head:
            if head not in methods:
                raise ConfigError(f"--set {text}: {head!r} is not one of --methods ({', '.join(methods)}); "
                                  f"METHOD:KEY=VALUE changes a key for that method's cells only")
            if rest.split("=", 1)[0].strip() in ("train.method", "train.seed", "data.splits"):
                raise ConfigError(f"--set {text}: compare sets {rest.split('=', 1)[0]} itself for every cell")
            own.setdefault(head, []).append(rest)
        else:
            shared.append(text)
    for text in shared:
        if text.split("=", 1)[0].strip() in ("train.method", "train.seed", "data.splits"):
            raise ConfigError(f"--set {text}: compare sets {text.split('=', 1)[0]} itself for every cell "
                              f"(--methods, --seeds, its split files)")
    return shared, own


def _cell_state(cell: Cell, cfg) -> str:
    from decseg import load_config
    from decseg.io import read_json_object
    from decseg.train.run_stats import read_stats

    wanted = _config_dict(cfg)
    done = read_json_object(cell.dir / CELL_RESULT)
    if done is not None:
        diffs = _differences(wanted, _strip_execution(done.get("config", {})))
        if diffs:
            raise ConfigError(f"{cell.dir}: finished with other settings ({'; '.join(diffs[:4])}); use "
                              f"another --out, or remove that cell to train it again")
        return "done"
    stored = cell.dir / "config.yaml"
    if not (cell.dir / "checkpoints" / "last.pt").is_file():
        return "new"
    if stored.is_file():
        diffs = _differences(wanted, _config_dict(load_config(stored, validate=False)))
        if diffs:
            raise ConfigError(f"{cell.dir}: holds a run with other settings ({'; '.join(diffs[:4])}); use "
                              f"another --out, or remove that cell to train it again")
    stats = read_stats(cell.dir) or {}
    if stats.get("iteration") == cfg.train.iterations and (cell.dir / "checkpoints" / "best.pt").is_file():
        return "evaluate"
    return "resume"


def _strip_execution(d: dict) -> dict:
    d = {s: dict(v) for s, v in d.items() if isinstance(v, dict)}
    for section, key in EXECUTION_KEYS:
        d.get(section, {}).pop(key, None)
    return d


def _lock_holder(cell: Cell) -> str | None:
    """None when no live process holds the cell's run lock, else the refusal message."""
    from decseg.train.run_lock import RunLock, RunLocked

    try:
        lock = RunLock.acquire(cell.dir)
    except RunLocked as e:
        return str(e)
    lock.release()
    return None


def finish_cell(cell: Cell, data: Path, metrics: dict) -> dict:
    """Write CELL/metrics.json, then CELL/cell.json (the cell is finished when it exists)."""
    from decseg.inference.checkpoint import load_checkpoint
    from decseg.io import atomic_write_text
    from decseg.train.run_stats import read_stats

    atomic_write_text(cell.dir / "metrics.json", json.dumps(metrics, indent=2, default=float) + "\n")
    best = load_checkpoint(cell.dir / "checkpoints" / "best.pt", map_location="cpu")
    record = {
        "method": cell.method, "ratio": cell.ratio, "seed": cell.seed,
        "train_method": cell.config["train"]["method"],
        "labeled": cell.n_labeled, "labeled_fraction": cell.labeled_fraction,
        "splits": str(cell.splits), "data": str(data),
        "iterations": cell.config["train"]["iterations"],
        "best_iteration": int(best["iteration"]), "best_val_dice": best.get("best_val_dice"),
        "metrics": metrics, "train_stats": read_stats(cell.dir), "config": cell.config,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    del best
    atomic_write_text(cell.dir / CELL_RESULT, json.dumps(record, indent=2, default=float) + "\n")
    return record


def _evaluate(pred: Path, data: Path, classes: int) -> dict:
    """evaluate_sets on every test set (with the class count where the evaluator takes one)."""
    import inspect
    import warnings

    from decseg.metrics import evaluate_sets
    from decseg.metrics.evaluate import EvaluationWarning

    kwargs = {"workers": 1}
    if "classes" in inspect.signature(evaluate_sets).parameters:
        kwargs["classes"] = classes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EvaluationWarning)
        results = evaluate_sets(pred, data / "test", **kwargs)
    for w in caught:  # resizing, empty ground truth, ...: printed as decseg evaluate prints them
        if issubclass(w.category, EvaluationWarning):
            print(f"warning: {pred.parent}: {w.message}", file=sys.stderr)
    return results


# -- running cells: in this process ----------------------------------------------------------

def run_cell_here(cell: Cell, data: Path, classes: int, log: Callable[[str], None]) -> int:
    """Train (or resume) and evaluate one cell in this process; returns the trainer's exit code."""
    from decseg.config import config_from_dict
    from decseg.inference.predictor import predict_checkpoint
    from decseg.train.trainer import Trainer

    if cell.state in ("new", "resume"):
        cfg = config_from_dict(cell.config).validate()
        rc = Trainer(cfg, data, cell.dir, resume=cell.state == "resume").run()
        if rc != 0:
            return rc
    predict_checkpoint(cell.dir / "checkpoints" / "best.pt", cell.dir / "pred", data=data,
                       device=cell.config["train"]["device"], overwrite=True)
    finish_cell(cell, data, _evaluate(cell.dir / "pred", data, classes))
    return 0


# -- running cells: subprocesses, one queue per machine --------------------------------------

def _die_with_parent() -> None:
    """Child side: get SIGTERM when compare dies (even by SIGKILL), so no cell trains unowned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: children outlive a killed compare and finish their cell


class SubprocessRunner:
    """Cells as ``decseg train`` (or torchrun) + ``decseg predict`` subprocesses, one worker per slot."""

    def __init__(self, data: Path, out: Path, classes: int, slots: list[str | None], nproc: int,
                 log: Callable[[str], None]):
        self.data, self.out, self.classes, self.slots, self.nproc, self.log = data, out, classes, slots, nproc, log
        self.failed: list[str] = []
        self.busy: list[str] = []
        self.stop = threading.Event()
        self.procs: set[subprocess.Popen] = set()
        self.lock = threading.Lock()

    def _env(self, slot: str | None) -> dict:
        env = dict(os.environ)
        if slot is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot
        return env

    def _call(self, cmd: list[str], slot: str | None, log_file: Path) -> int:
        with open(log_file, "a", encoding="utf-8") as f:
            f.write(f"\n$ {' '.join(cmd)}\n")
            f.flush()
            proc = subprocess.Popen(cmd, env=self._env(slot), stdout=f, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            with self.lock:
                self.procs.add(proc)
            try:
                return proc.wait()
            finally:
                with self.lock:
                    self.procs.discard(proc)

    def commands(self, cell: Cell) -> tuple[list[str] | None, list[str]]:
        py = sys.executable
        train = None
        if cell.state in ("new", "resume"):
            args = ["train", "--data", str(self.data), "--out", str(cell.dir), "--set", *cell.overrides]
            if cell.state == "resume":
                args.append("--resume")
            if self.nproc > 1:
                train = [py, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={self.nproc}",
                         "-m", "decseg", *args]
            else:
                train = [py, "-m", "decseg", *args]
        predict = [py, "-m", "decseg", "predict", "--checkpoint", str(cell.dir / "checkpoints" / "best.pt"),
                   "--data", str(self.data), "--out", str(cell.dir / "pred"), "--overwrite",
                   "--device", cell.config["train"]["device"]]
        return train, predict

    def _work(self, slot: str | None, cells: "queue.Queue[Cell]") -> None:
        while not self.stop.is_set():
            try:
                cell = cells.get_nowait()
            except queue.Empty:
                return
            holder = _lock_holder(cell)
            if holder:
                self.log(f"skipped {cell.name}: {holder}")
                self.busy.append(cell.name)
                continue
            log_file = self.out / "logs" / f"{cell.method}_{cell.ratio}_seed{cell.seed}.log"
            where = f"GPU {slot}" if slot is not None else "a subprocess"
            self.log(f"start {cell.name} ({cell.state}) on {where}; output: {log_file}")
            train, predict = self.commands(cell)
            rc = 0
            if train is not None:
                rc = self._call(train, slot, log_file)
            if rc == 0 and not self.stop.is_set():
                rc = self._call(predict, slot, log_file)
            if rc == 0 and not self.stop.is_set():
                finish_cell(cell, self.data, _evaluate(cell.dir / "pred", self.data, self.classes))
                self.log(f"done  {cell.name}")
            elif not self.stop.is_set():
                self.failed.append(f"{cell.name} (exit {rc}; see {log_file})")
                self.stop.set()  # the first failure stops the queue; running cells finish

    def run(self, cells: list[Cell]) -> None:
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        todo: queue.Queue[Cell] = queue.Queue()
        for c in cells:
            todo.put(c)
        workers = [threading.Thread(target=self._work, args=(slot, todo), daemon=True) for slot in self.slots]
        old = {}

        def forward(signum, frame):  # a stopped compare stops its cells; they save last.pt
            self.stop.set()
            with self.lock:
                for p in self.procs:
                    p.send_signal(signum)

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, forward)
        try:
            for w in workers:
                w.start()
            while any(w.is_alive() for w in workers):
                for w in workers:
                    w.join(timeout=0.2)
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)


# -- the whole comparison --------------------------------------------------------------------

def run_compare(data: str | Path, out: str | Path, methods: list[str], ratios, seeds: list[int], *,
                config: str | None = None, overrides: Sequence[str] = (), gpus: list[str] | None = None,
                nproc_per_cell: int = 1, parallel: int | None = None,
                log: Callable[[str], None] | None = None) -> dict:
    """Run every pending cell, then write DIR/results.json and DIR/report.md; returns the results."""
    from decseg.cli.compare_report import write_compare_report
    from decseg.data import DatasetLayout
    from decseg.files import check_output
    from decseg.io import read_json_object

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    data, out = Path(data), Path(out)
    check_output(out, "--out")
    layout = DatasetLayout(data)
    if not layout.test_sets():
        raise DataError(f"{data}: no test sets under test/SET/images; compare evaluates every cell on them")
    if nproc_per_cell < 1:
        raise ConfigError(f"--nproc-per-cell {nproc_per_cell} must be >= 1")
    out.mkdir(parents=True, exist_ok=True)
    infos = write_splits(layout, out, ratios, seeds, with_full=FULL in methods)
    cells = plan_cells(data, out, methods, ratios, seeds, config, overrides, infos, layout.classes)
    pending = [c for c in cells if c.state != "done"]
    counts = {s: sum(c.state == s for c in cells) for s in ("done", "resume", "evaluate", "new")}
    log(f"compare: {len(cells)} cells in {out} ({counts['done']} finished, {counts['resume']} to resume, "
        f"{counts['evaluate']} to evaluate, {counts['new']} new)")

    busy: list[str] = []
    if gpus is not None or nproc_per_cell > 1 or parallel:
        if gpus is not None:
            if len(gpus) % nproc_per_cell:
                raise ConfigError(f"--gpus {','.join(gpus)}: {len(gpus)} GPUs do not split into cells of "
                                  f"--nproc-per-cell {nproc_per_cell}; list a multiple of {nproc_per_cell}")
            # one worker per group of N GPUs: a cell's torchrun processes use cuda:0..N-1 of its group
            slots: list[str | None] = [",".join(gpus[i:i + nproc_per_cell])
                                       for i in range(0, len(gpus), nproc_per_cell)]
        else:
            slots = [None] * (parallel or 1)
        runner = SubprocessRunner(data, out, layout.classes, slots, nproc_per_cell, log)
        runner.run(pending)
        busy = runner.busy
        if runner.failed:
            raise DecsegError(f"cell {runner.failed[0]} failed; fix it and rerun the same decseg compare "
                              f"(finished cells are kept, interrupted ones resume)")
        if runner.stop.is_set():
            raise KeyboardInterrupt
    else:
        for k, cell in enumerate(pending, 1):
            holder = _lock_holder(cell)
            if holder:
                log(f"skipped {cell.name}: {holder}")
                busy.append(cell.name)
                continue
            log(f"\n[{k}/{len(pending)}] {cell.name}: {cell.state} "
                f"({cell.n_labeled} labeled, train.method={cell.config['train']['method']})")
            rc = run_cell_here(cell, data, layout.classes, log)
            if rc in (130, 143):
                raise KeyboardInterrupt
            if rc != 0:
                raise DecsegError(f"cell {cell.name} stopped with exit code {rc}; rerun the same decseg compare")

    results = write_compare_report(out, [c.name for c in cells], [m for m in methods], [t for t, _ in ratios],
                                   seeds, [read_json_object(c.dir / CELL_RESULT) for c in cells])
    log(f"report: {out / 'report.md'}")
    if busy:
        raise CellsBusy(f"{len(busy)} cell(s) are in use by another decseg train ({', '.join(busy[:3])}); "
                        f"the report covers the others: rerun decseg compare when they have ended")
    return results


# -- the command -----------------------------------------------------------------------------

def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset folder (from decseg prepare / decseg synth)")
    p.add_argument("--methods", required=True,
                   help="comma-separated train.method values, and 'full' for the fully supervised upper "
                        "bound; the first is the reference of the paired tests, e.g. supervised,decseg,full")
    p.add_argument("--labeled", required=True,
                   help="comma-separated label ratios: fractions of the training pool (0.05,0.1) or counts (145)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per method and ratio (default 3)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST .. FIRST+N-1 (default 0)")
    p.add_argument("--out", required=True, help="comparison folder: cells, splits, results.json, report.md")
    p.add_argument("--config", default=None, help="YAML file or preset name (polyp, isic2018, lgg) for every cell")
    add_set_arg(p, help="override config keys of every cell (KEY=VALUE), or of one method's cells "
                        "(METHOD:KEY=VALUE, e.g. full:train.batch_labeled=6)")
    p.add_argument("--gpus", default=None, help="run cells in parallel, one subprocess per listed GPU, e.g. 0,1,2,3")
    p.add_argument("--parallel", type=int, default=None, metavar="N",
                   help="run N cells at a time as subprocesses (without --gpus: each sees every device)")
    p.add_argument("--nproc-per-cell", type=int, default=1, metavar="N",
                   help="train each cell under torchrun --nproc_per_node=N (default 1: no torchrun)")


def run(args: argparse.Namespace) -> int:
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds} must be >= 1")
    if args.first_seed < 0:
        raise ConfigError(f"--first-seed {args.first_seed} must be >= 0")
    if args.parallel is not None and args.parallel < 1:
        raise ConfigError(f"--parallel {args.parallel} must be >= 1")
    gpus = parse_gpus(args.gpus)
    if gpus is not None and args.parallel is not None:
        raise ConfigError("give --gpus or --parallel, not both (--gpus runs one cell per listed GPU)")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    results = run_compare(args.data, args.out, parse_methods(args.methods), parse_ratios(args.labeled), seeds,
                          config=args.config, overrides=args.overrides, gpus=gpus,
                          nproc_per_cell=args.nproc_per_cell, parallel=args.parallel)
    print(f"{len(results['cells'])} cells; report: {Path(args.out) / 'report.md'}")
    return 0
