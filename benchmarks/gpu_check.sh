#!/usr/bin/env bash
# One prepared check for a lent GPU: the paper model (res2net50d, random init) at S=352, batch 3+3,
# bf16 autocast + channels_last (the project defaults), a few hundred real training iterations on
# synthetic tensors; prints it/s and peak GPU memory, then a short strict-fp32 run of the same
# step for comparison, then inference images/s; then the same bf16 training and inference for two
# transformer encoders (pvt_v2_b2, and the DINOv2 ViT-S vit_small_patch14_dinov2, which sees the
# 352 px input at 308 px: a 22 x 22 grid of 14-px patches). Ends within 8 minutes (time budgets below).
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine, from anywhere
#   bash benchmarks/gpu_check.sh --tiny     # CPU-testable: resnet18, 64 px, a few iterations
#
# Needs torch + timm + pyyaml (present on the lent machines); decseg is used from this checkout
# without installing. JSON results go to $GPU_CHECK_OUT, else $OUT, else the current folder.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
OUTDIR="${GPU_CHECK_OUT:-${OUT:-.}}"
mkdir -p "$OUTDIR"
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || PY=python

exec timeout --signal=INT 470 "$PY" - "$OUTDIR" "$@" <<'PYEOF'
import json, math, sys, time
from pathlib import Path

import torch

from decseg import load_config
from decseg.cli import benchmarking as bench

out_dir = Path(sys.argv[1])
tiny = "--tiny" in sys.argv[2:]
if tiny:
    base = ["model.encoder=resnet18", "data.size=64", "train.batch_labeled=2", "train.batch_unlabeled=2"]
    iters, warmup, train_budget, fp32_iters, pred_batch, pred_steps = 2, 1, 60.0, 1, 2, 1
    encoders, enc_iters, enc_budget = ("pvt_v2_b0", "vit_small_patch14_dinov2"), 1, 30.0
else:
    base = ["model.encoder=res2net50d", "data.size=352", "train.batch_labeled=3", "train.batch_unlabeled=3"]
    iters, warmup, train_budget, fp32_iters, pred_batch, pred_steps = 300, 5, 180.0, 15, 16, 10
    encoders, enc_iters, enc_budget = ("pvt_v2_b2", "vit_small_patch14_dinov2"), 100, 45.0
base += ["model.pretrained=false", "train.iterations=10000"]
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if device.type != "cuda" and not tiny:
    sys.exit("gpu_check: no CUDA device visible (torch.cuda.is_available() is False); "
             "use --tiny to try the script on a CPU")
env = bench.environment(device)
print(f"gpu_check: {env.get('gpu_name', env['cpu_name'])}, torch {env['torch']}, "
      f"{'tiny CPU mode' if tiny else 'paper model'}", flush=True)
if device.type == "cuda":
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_run(overrides, n_iters, n_warmup, budget):
    cfg = load_config(None, base + overrides + [f"train.device={device}"])
    t0 = time.perf_counter()
    ts = bench.build_train_step(cfg, device)
    build_s = time.perf_counter() - t0
    for _ in range(n_warmup):
        ts.step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    done, t0 = 0, time.perf_counter()
    while done < n_iters and time.perf_counter() - t0 < budget:
        ts.step()
        done += 1
    sync()
    elapsed = time.perf_counter() - t0
    loss = float(ts.last_losses["loss"])
    r = {"iterations": done, "seconds": elapsed, "iterations_per_second": done / elapsed,
         "seconds_per_iteration": elapsed / done, "build_seconds": build_s, "warmup": n_warmup,
         "loss": loss, "loss_finite": math.isfinite(loss), **bench.config_echo(cfg, device)}
    if device.type == "cuda":
        r["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / bench.GB
        r["peak_gpu_reserved_gb"] = torch.cuda.max_memory_reserved() / bench.GB
    del ts
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return r


def mem(r):
    return f"peak GPU memory {r['peak_gpu_gb']:.2f} GB" if "peak_gpu_gb" in r else "CPU run"


train = train_run([], iters, warmup, train_budget)
print(f"train (bf16, channels_last): {train['iterations_per_second']:.2f} it/s "
      f"({train['seconds_per_iteration'] * 1000:.0f} ms/it over {train['iterations']} iterations, "
      f"S={train['size']}, batch {train['batch_labeled']}+{train['batch_unlabeled']}); {mem(train)}; "
      f"loss {train['loss']:.4f}", flush=True)
with bench.strict_fp32():
    fp32 = train_run(["train.amp=off", "train.channels_last=false"], fp32_iters, 0 if tiny else 1,
                     train_budget / 4)
print(f"train (strict fp32, NCHW):   {fp32['iterations_per_second']:.2f} it/s "
      f"({fp32['seconds_per_iteration'] * 1000:.0f} ms/it over {fp32['iterations']} iterations); {mem(fp32)}",
      flush=True)
cfg = load_config(None, base + [f"train.device={device}", f"predict.batch_size={pred_batch}",
                               "predict.amp=bf16"])
pred = bench.benchmark_predict(cfg, steps=pred_steps, warmup=1, device=device, agreement=True)
print(f"predict (bf16): {pred['images_per_second']:.1f} images/s at batch {pred_batch}; "
      f"pixel agreement vs fp32 {100 * pred['pixel_agreement_vs_fp32']:.3f}%", flush=True)
results = [("train", train), ("train_fp32", fp32), ("predict", pred)]
for enc in encoders:  # the transformer encoders: bf16 + channels_last training, then inference
    r = train_run([f"model.encoder={enc}"], enc_iters, 2 if not tiny else 0, enc_budget)
    print(f"train {enc} (bf16, channels_last): {r['iterations_per_second']:.2f} it/s "
          f"({r['seconds_per_iteration'] * 1000:.0f} ms/it over {r['iterations']} iterations); {mem(r)}; "
          f"loss {r['loss']:.4f}", flush=True)
    enc_cfg = load_config(None, base + [f"model.encoder={enc}", f"train.device={device}",
                                       f"predict.batch_size={pred_batch}", "predict.amp=bf16"])
    p = bench.benchmark_predict(enc_cfg, steps=max(1, pred_steps // 2), warmup=1, device=device, agreement=True)
    print(f"predict {enc} (bf16): {p['images_per_second']:.1f} images/s at batch {pred_batch}; "
          f"pixel agreement vs fp32 {100 * p['pixel_agreement_vs_fp32']:.3f}%", flush=True)
    results += [(f"train_{enc}", r), (f"predict_{enc}", p)]
for name, r in results:
    (out_dir / f"gpu_check_{name}.json").write_text(json.dumps(r, indent=2) + "\n")
ok = all(r["loss_finite"] for name, r in results if name.startswith("train"))
print(f"gpu_check: {'OK' if ok else 'FAILED: non-finite loss'}; JSON in {out_dir}", flush=True)
sys.exit(0 if ok else 1)
PYEOF
