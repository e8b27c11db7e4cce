"""Run under torchrun by test_processes.py: train, then write this rank's weight hash.

    torchrun --nproc_per_node=2 tests/train/ddp_weights_digest.py DATA RUN KEY=VALUE ...

Each rank writes RUN/digest/rank{r}.json with the SHA-256 of its network's parameters, so the
test can check that DDP kept the ranks' weights identical.
"""
import hashlib
import json
import os
import sys
from pathlib import Path

from decseg import load_config
from decseg.train.trainer import Trainer

data, run, overrides = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
trainer = Trainer(load_config(None, overrides), data, run)
rc = trainer.run()
h = hashlib.sha256()
for name, p in sorted(trainer.method.net.named_parameters()):
    h.update(name.encode())
    h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
rank = int(os.environ.get("RANK", "0"))
(run / "digest").mkdir(parents=True, exist_ok=True)
(run / "digest" / f"rank{rank}.json").write_text(json.dumps(
    {"iteration": trainer.iteration, "sha256": h.hexdigest(), "world_size": trainer.info.world_size}))
sys.exit(rc)
