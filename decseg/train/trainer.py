"""The training loop: one method, one optimizer, checkpoints, logs, signals, DDP.

The loop knows no method's details: ``method(labeled, unlabeled, iteration)`` returns its losses
and, when asked, pictures to log (see ``decseg/methods/base.py``). Everything a resumed run needs to continue exactly
(optimizer, scaler, EMA, loader position, RNG states) goes into ``RUN/checkpoints/last.pt``.
"""
from __future__ import annotations

import json
import math
import random
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

from decseg.config import Config
from decseg.train import distributed as D
from decseg.inference.checkpoint import (
    check_compatible, from_safe, load_checkpoint, load_model_state, save_checkpoint,
)
from decseg.accel.device import resolve_device
from decseg.accel.malloc import release_free_memory
from decseg.methods import check_method_config, method_class
from decseg.train.run_lock import RunLock
from decseg.train.run_stats import RunStats
from decseg.train.step import TrainStep, build_training
from decseg.train.validation import has_val_split, validate
from decseg.errors import CheckpointError, ConfigError, DecsegError
from decseg.files import check_output
from decseg.io import atomic_write_text, seed_everything

SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingDiverged(DecsegError):
    """Too many consecutive non-finite losses."""


class Trainer:
    """``Trainer(cfg, data_root, run_dir).run()`` trains and returns the process exit code.

    ``stop_after``: stop (saving last.pt) once that many iterations are done, as if interrupted.
    After ``run()``, ``method`` holds this process's trained method.
    """

    def __init__(self, cfg: Config, data_root: str | Path, run_dir: str | Path, *, resume: bool = False,
                 stop_after: int | None = None):
        self.cfg = cfg
        self.data_root = Path(data_root)
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.resume = resume
        self.stop_after = stop_after
        self._signal: int | None = None
        self._lock: RunLock | None = None

    # -- setup -----------------------------------------------------------------------------
    def _adopt_intensity(self, cfg: Config) -> None:
        """dataset.yaml's recorded intensity rule becomes data.intensity, so config.yaml and the
        checkpoints carry it and ``predict --images`` reads raw files as the training images were made."""
        from decseg.data.intensity import IntensityRule

        recorded = self.layout.info.get("intensity")
        if recorded is None:
            return
        where = self.data_root / "dataset.yaml"
        try:
            spec = IntensityRule.from_dict(recorded).spec
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}; fix the intensity: entry or prepare the data again") from None
        if cfg.data.intensity not in ("auto", spec):
            raise ConfigError(f"{where} records intensity {spec} but data.intensity={cfg.data.intensity}; "
                              f"drop the setting or set --set data.intensity={spec}")
        cfg.data.intensity = spec

    def _setup(self) -> None:
        cfg = self.cfg
        cfg.validate()
        check_method_config(cfg)  # fail on bad batch settings before anything heavy
        self.info = D.env_dist_info()
        self.device = resolve_device(cfg.train.device,
                                     local_rank=self.info.local_rank if self.info.enabled else None)
        D.init_process_group(self.info, self.device)
        self.main = self.info.is_main

        self._on_rank0(self._take_lock)  # one writer per run folder, before anything is written

        from decseg.data import DatasetLayout, TwoStreamLoader
        from decseg.data.check import check_training_data

        self.layout = DatasetLayout(self.data_root, splits=cfg.data.splits or None)
        if self.layout.classes != cfg.data.classes:
            raise ConfigError(f"{self.data_root / 'dataset.yaml'} has classes={self.layout.classes} but "
                              f"data.classes={cfg.data.classes}; set --set data.classes={self.layout.classes}")
        self._adopt_intensity(cfg)
        self._on_rank0(lambda: check_training_data(self.layout))  # before time goes into training
        if self.main:
            atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        seed_everything(cfg.train.seed)  # identical initial weights on every rank
        parts = build_training(cfg, self.device, distributed=self.info.enabled)
        for note in parts.plan.notes:
            self._say(note)
        self.plan = parts.plan
        st = parts.settings()
        self._say(f"execution: {self.device}, {st['amp_dtype']}, "
                  f"{'channels_last' if st['channels_last_resolved'] else 'NCHW'}, optimizer in backward "
                  f"{'on' if st['optimizer_in_backward_resolved'] else 'off'}, "
                  f"{st['gemm_weight_grad_convs']} GEMM weight-gradient convs, cpu memory "
                  f"{st['cpu_memory_resolved']}")
        self.method, self.optimizer = parts.method, parts.optimizer
        self.memory_format = parts.plan.memory_format
        self.loader = TwoStreamLoader(
            self.layout, cfg.data, batch_labeled=cfg.train.batch_labeled,
            batch_unlabeled=cfg.train.batch_unlabeled, seed=cfg.train.seed, rank=self.info.rank,
            world_size=self.info.world_size, num_workers=cfg.data.num_workers,
            semi=method_class(cfg).uses_unlabeled(cfg))
        seed_everything(cfg.train.seed + self.info.rank)  # per-rank noise/dropout streams
        self.iteration = 0
        self.best: float | None = None
        self.resume_scaler: dict | None = None
        if self.resume:
            self._restore()
        self.model = D.wrap_ddp(self.method, self.device) if self.info.enabled else self.method
        if cfg.train.compile:
            self.method.net.compile()  # in place: state-dict keys stay the same
        self.step = TrainStep(cfg, parts, self.model)
        if self.resume_scaler is not None:
            self.step.scaler.load_state_dict(self.resume_scaler)
        self.has_val = has_val_split(self.layout)

    def _take_lock(self) -> None:
        check_output(self.run_dir, "--out")
        self._lock = RunLock.acquire(self.run_dir)
        # the lock makes this process the run's only writer: temp files of a checkpoint write
        # cut by kill -9 belong to no one
        for stale in self.ckpt_dir.glob(".*.pt.*.tmp"):
            stale.unlink(missing_ok=True)

    def _on_rank0(self, work) -> None:
        """``work()`` on rank 0; when it raises a DecsegError there, every rank stops (none waits)."""
        error: DecsegError | None = None
        if self.main:
            try:
                work()
            except DecsegError as e:
                error = e
        if D.any_across_ranks([error is not None], self.device)[0]:
            raise error or DecsegError("rank 0 stopped the run before training; see its message")

    def _restore(self) -> None:
        path = self.ckpt_dir / "last.pt"
        if not path.is_file():
            self._say(f"--resume: {path} not found; starting from iteration 0")
            return
        ckpt = load_checkpoint(path, map_location="cpu")
        check_compatible(ckpt, self.cfg, path)
        if "resume" not in ckpt:
            raise CheckpointError(f"{path} holds no resume state (only weights); resume needs the last.pt "
                                  f"written by decseg train")
        state = from_safe(ckpt["resume"])
        load_model_state(self.method.net, ckpt["model"], path)
        # generators and other non-network parameters of the method
        result = self.method.load_state_dict(state["method"], strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("net.")]
        if missing or result.unexpected_keys:
            raise CheckpointError(f"{path}: resume state does not fit train.method={self.cfg.train.method} "
                                  f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})")
        self.method.load_extra_state(state.get("method_extra", {}))
        self.method.on_device(self.device, self.memory_format)
        self.optimizer.load_state_dict(state["optimizer"])
        self.resume_scaler = state["scaler"]
        self.iteration = int(ckpt["iteration"])
        self.best = ckpt["best_val_dice"]
        ranks = state["ranks"]
        if len(ranks) != self.info.world_size:
            warnings.warn(f"{path} was written by {len(ranks)} process(es), this run has "
                          f"{self.info.world_size}: data order and random streams restart, so the "
                          f"result will not match an uninterrupted run")
            mine = ranks[0] if self.info.world_size == 1 else None
        else:
            mine = ranks[self.info.rank]
        if mine is not None:
            self.loader.load_state_dict(mine["loader"])
            set_rng_state(mine["rng"])
        self._say(f"resumed from {path} at iteration {self.iteration}")

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        handlers = self._install_signal_handlers()
        try:
            self._setup()
            return self._loop()
        finally:
            if self._lock is not None:
                self._lock.release()
            for sig, old in handlers.items():
                signal.signal(sig, old)
            D.destroy_process_group()

    def _loop(self) -> int:
        t = self.cfg.train
        log, tb = self._open_logs()
        from tqdm import tqdm

        bar = tqdm(total=t.iterations, initial=self.iteration, disable=None if self.main else True,
                   desc="train", unit="it", dynamic_ncols=True, file=sys.stderr)
        plain_progress = self.main and bar.disable
        if self.main and not self.has_val:
            self._say(f"{self.data_root}: no val split; validation is skipped and best.pt is the "
                      f"latest weights (model selection never uses test sets)")
        batches = iter(self.loader)
        self.method.train()
        nonfinite = 0
        t0, it0 = time.time(), self.iteration
        self.stats = RunStats(self.device, self.iteration, self.info.world_size)
        while self.iteration < t.iterations:
            self.stats.begin()
            lab, unl = next(batches)
            lab, unl = self._to_device(lab), self._to_device(unl)
            lr = self.step.set_lr(self.iteration)
            want_images = bool(self.main and t.image_every and (self.iteration + 1) % t.image_every == 0)
            with D.collective_errors("the training step's forward (DDP buffer broadcast)"):
                losses, visuals = self.step.forward(lab, unl, self.iteration, with_visuals=want_images)
            loss = losses["loss"]
            bad, stop = D.any_across_ranks([not bool(torch.isfinite(loss)), self._signal is not None],
                                           self.device)
            if bad:
                # Skip the update: the weights stay those of the last finite step.
                nonfinite += 1
                self._say(f"warning: non-finite loss at iteration {self.iteration + 1} "
                          f"({nonfinite}/{t.max_nonfinite} in a row); step skipped")
                if nonfinite >= t.max_nonfinite:
                    bar.close()
                    raise TrainingDiverged(
                        f"training diverged: {nonfinite} consecutive non-finite losses up to iteration "
                        f"{self.iteration + 1}; stopped without saving, so {self.ckpt_dir / 'last.pt'} "
                        f"still holds the weights from before. Lower train.lr, use train.amp=off, or "
                        f"raise train.max_nonfinite")
            else:
                nonfinite = 0
                with D.collective_errors("the training step's gradient all-reduce (DDP backward)"):
                    self.step.update(loss, self.iteration)
            self.stats.end()
            self.iteration += 1
            bar.update(1)

            it = self.iteration
            if it % t.log_every == 0 or it == t.iterations:
                values = {k: float(v.detach()) for k, v in losses.items()}
                values = D.mean_across_ranks(values, self.device)
                record = {"iter": it, "lr": lr, **{k: values[k] for k in sorted(values)}}
                if self.main:
                    log.write(record)
                    for k, v in values.items():
                        tb.add_scalar(f"train/{k}", v, it)
                    tb.add_scalar("train/lr", lr, it)
                    bar.set_postfix(loss=f"{values['loss']:.4f}")
                    if plain_progress:
                        speed = (it - it0) / max(time.time() - t0, 1e-9)
                        eta = (t.iterations - it) / max(speed, 1e-9)
                        print(f"iter {it}/{t.iterations} loss {values['loss']:.4f} lr {lr:.2e} "
                              f"{speed:.2f} it/s eta {_hms(eta)}", file=sys.stderr, flush=True)
            if want_images:
                self._log_images(tb, visuals, it)

            finished = it == t.iterations
            if it % t.val_every == 0 or finished:
                self._validate_and_save(log, tb, it)
            elif stop or (self.stop_after is not None and it >= self.stop_after):  # not yet saved
                self._save(it, write_best=not self.has_val)
            if not finished and (stop or (self.stop_after is not None and it >= self.stop_after)):
                bar.close()
                tb.flush()
                if stop:
                    name = signal.Signals(self._signal).name if self._signal else "a signal on another rank"
                    self._say(f"stopped by {name} after iteration {it}; saved {self.ckpt_dir / 'last.pt'}; "
                              f"continue with: decseg train ... --resume")
                    return SIGNAL_EXIT_CODES.get(self._signal, 143)
                self._say(f"stopped after iteration {it} (--stop-after); continue with --resume")
                return 0
        # Every rank leaves together: a rank that tears its gloo group down while rank 0 is still
        # writing the last checkpoint can abort at exit ("terminate called without an active exception").
        D.barrier()
        bar.close()
        tb.close()
        if self.main:
            best = f"{self.best:.4f}" if self.best is not None else "n/a (not validated)"
            self._say(f"done: {t.iterations} iterations, best val Dice {best}; checkpoints in {self.ckpt_dir}")
        return 0

    # -- pieces ----------------------------------------------------------------------------
    def _to_device(self, batch: dict | None) -> dict | None:
        if batch is None:
            return None
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device, non_blocking=True)
                if v.dim() == 4:
                    v = v.contiguous(memory_format=self.memory_format)
            out[k] = v
        return out

    def _validate_and_save(self, log: "JsonlLog", tb, it: int) -> None:
        improved = False
        if self.has_val:
            dice = None
            if self.main:
                self.method.net.eval()
                try:
                    dice = validate(self.method.net, self.layout, self.cfg, self.device, self.plan.dtype,
                                    memory_format=self.memory_format)
                finally:
                    self.method.net.train()
                    if self.plan.cpu_memory in ("reuse", "cache"):
                        # validation's tensors have other sizes than a step's: hand its
                        # leftovers back rather than let them fragment the kept heap
                        release_free_memory()
                log.write({"iter": it, "val_dice": dice})
                tb.add_scalar("val/dice", dice, it)
                if self.best is None or dice > self.best:
                    self.best, improved = dice, True
            D.barrier()
        self._save(it, write_best=improved or not self.has_val)

    def _save(self, it: int, write_best: bool) -> None:
        """last.pt (with resume state) and, when asked, best.pt (weights only). Rank 0 writes."""
        per_rank = D.gather_objects({"loader": self.loader.state_dict(), "rng": get_rng_state()})
        error: CheckpointError | None = None
        if self.main:
            try:
                self._write_checkpoints(it, write_best, per_rank)
            except CheckpointError as e:
                error = e
        # a sync point that also tells every rank whether rank 0 could write (no rank hangs)
        if D.any_across_ranks([error is not None], self.device)[0]:
            raise error or CheckpointError("rank 0 could not write a checkpoint; see its message")

    def _write_checkpoints(self, it: int, write_best: bool, per_rank: list) -> None:
        """Rank 0: best.pt (weights only) when asked, then last.pt with the resume state."""
        model_state = self.method.net.state_dict()
        own = {k: v for k, v in self.method.state_dict().items() if not k.startswith("net.")}
        resume = {
            "method": own,
            "method_extra": self.method.extra_state(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.step.scaler.state_dict(),
            "ranks": per_rank,
            "world_size": self.info.world_size,
        }
        common = dict(model_state=model_state, config=self.cfg, iteration=it, best_val_dice=self.best)
        if write_best:
            save_checkpoint(self.ckpt_dir / "best.pt", **common)
        save_checkpoint(self.ckpt_dir / "last.pt", resume=resume, **common)
        self.stats.write(self.run_dir, it)  # iteration time and peak memory (train_stats.json)

    def _open_logs(self):
        log = JsonlLog(self.run_dir / "log.jsonl", enabled=self.main)
        log.truncate_after(self.iteration)
        if self.main:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.iteration or None)
        else:
            tb = _NullWriter()
        return log, tb

    def _log_images(self, tb, visuals: dict, it: int) -> None:
        for name, x in visuals.items():
            x = x[0]
            if name == "mask" or name.startswith("o"):  # labels, or logits -> class map
                labels = x.long() if name == "mask" else x.argmax(0)
                img = (labels.unsqueeze(0).float() if self.cfg.data.classes == 2
                       else _palette_colours(labels))  # K > 2: each class in its palette colour
            else:  # images and reconstructions
                img = x[:3].clamp(0, 1) if x.shape[0] >= 3 else x[:1].clamp(0, 1)
            tb.add_image(f"images/{name}", img, it)

    def _install_signal_handlers(self) -> dict:
        """SIGINT/SIGTERM: finish the step, save last.pt, exit. A second signal aborts at once."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):
            if self._signal is not None:
                raise KeyboardInterrupt
            self._signal = signum
            if getattr(self, "main", True):
                print(f"\n{signal.Signals(signum).name} received: finishing the current step and saving "
                      f"(send it again to abort without saving)", file=sys.stderr, flush=True)

        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
        return old

    def _say(self, msg: str) -> None:
        if getattr(self, "main", True):
            print(msg, file=sys.stderr, flush=True)


def _palette_colours(labels: torch.Tensor) -> torch.Tensor:
    """(H, W) class indices -> (3, H, W) float in [0, 1], coloured by decseg.labels.PALETTE."""
    from decseg.labels import PALETTE

    colours = torch.from_numpy(PALETTE.copy()).to(labels.device).float() / 255.0
    return colours[labels.clamp(0, 255)].permute(2, 0, 1)


class JsonlLog:
    """Append-only JSON-lines log (one object per line, flushed at once)."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = path
        self.enabled = enabled

    def truncate_after(self, iteration: int) -> None:
        """Drop records past ``iteration`` (a resumed run rewrites them; 0 = start fresh)."""
        if not self.enabled:
            return
        kept = []
        if iteration > 0 and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by kill -9
                if rec.get("iter", 0) <= iteration:
                    kept.append(line)
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class _NullWriter:
    def __getattr__(self, name):
        return lambda *a, **k: None


# -- RNG state as tensors (so checkpoints load with weights_only=True) -------------------------

def get_rng_state() -> dict:
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
