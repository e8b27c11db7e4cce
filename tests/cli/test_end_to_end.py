"""End to end through the console interface: synth -> train -> predict -> evaluate."""
from __future__ import annotations

import json
import math

import numpy as np
from PIL import Image

from decseg.cli.main import main

TOOLBOX_KEYS = ("meanDic", "meanIoU", "wFm", "Sm", "meanEm", "MAE", "maxEm", "maxDice", "maxIoU",
                "meanSen", "maxSen", "meanSpe", "maxSpe")


def test_synth_train_predict_evaluate(tmp_path, capsys):
    data, run, pred, metrics = tmp_path / "data", tmp_path / "run", tmp_path / "pred", tmp_path / "m.json"
    assert main(["synth", str(data), "--n", "8", "--size", "64", "--seed", "5", "--labeled", "0.5"]) == 0
    assert main(["train", "--data", str(data), "--out", str(run),
                 "--set", "model.encoder=resnet18", "--set", "model.pretrained=false",
                 "--set", "data.size=64", "--set", "data.num_workers=0", "--set", "train.iterations=2",
                 "--set", "train.batch_labeled=2", "--set", "train.batch_unlabeled=2",
                 "--set", "train.val_every=2", "--set", "train.log_every=1"]) == 0
    # the resolved execution settings are announced (a small bf16 model keeps freed memory)
    assert "cpu memory reuse" in capsys.readouterr().err
    best = run / "checkpoints" / "best.pt"
    assert best.is_file()
    assert main(["predict", "--checkpoint", str(best), "--data", str(data), "--out", str(pred),
                 "--workers", "0"]) == 0
    sets = sorted(p.name for p in (data / "test").iterdir())
    assert sorted(p.name for p in pred.iterdir()) == sets
    for s in sets:
        masks = sorted((data / "test" / s / "masks").iterdir())
        for m in masks:
            out = np.asarray(Image.open(pred / s / m.name))
            assert out.shape == np.asarray(Image.open(m)).shape[:2]
            assert set(np.unique(out)) <= {0, 255}
    assert main(["evaluate", "--pred", str(pred), "--gt", str(data / "test"), "--json", str(metrics)]) == 0
    result = json.loads(metrics.read_text())
    assert sorted(result) == sets
    for values in result.values():
        for key in TOOLBOX_KEYS:
            v = values[key]
            top = 2.0 if key.endswith("Em") else 1.0  # the toolbox's E-measure can exceed 1
            assert isinstance(v, (int, float)) and (math.isnan(v) or -1e-9 <= v <= top + 1e-9), (key, v)
