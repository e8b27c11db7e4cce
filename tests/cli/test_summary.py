"""``decseg summary --json``: per-module counts that add up, and output shapes."""
from __future__ import annotations

import json

from decseg.cli.main import main
from decseg.models import count_parameters
from decseg.models.generator import ReconstructionGenerator


def test_summary_json_reports_modules_totals_and_shapes(tmp_path, capsys):
    out = tmp_path / "summary.json"
    rc = main(["summary", "--set", "model.encoder=test_efficientnet", "--set", "model.pretrained=false",
               "--set", "data.size=96", "--set", "data.channels=1", "--json", str(out)])
    assert rc == 0
    s = json.loads(out.read_text())
    m = s["modules"]
    assert s["total_params"] == m["encoder"] + m["cfa"] + m["decoder_full"] + m["decoder_half"] + m["fusion"]
    assert m["fusion"] == sum(m["fusion_levels"].values())
    assert m["cfa"] == sum(m["cfa_levels"].values())
    assert s["generator_params"] == 2 * count_parameters(ReconstructionGenerator(2, 1))
    assert s["output_shapes"] == {"full": [2, 2, 96, 96], "half": [2, 2, 64, 64], "fused": [2, 2, 96, 96]}
    assert s["encoder_shapes"][0] == [2, 16, 48, 48]
    printed = capsys.readouterr().out
    assert f"{s['total_params']:,}" in printed and "dcf5" in printed


def test_summary_without_fusion_reports_it_off(tmp_path):
    out = tmp_path / "s.json"
    assert main(["summary", "--set", "model.encoder=test_efficientnet", "--set", "model.pretrained=false",
                 "--set", "data.size=64", "--set", "model.dcf=false", "--set", "model.sc=false",
                 "--json", str(out)]) == 0
    s = json.loads(out.read_text())
    assert s["output_shapes"] == {"full": [2, 2, 64, 64], "half": None, "fused": None}
    assert s["modules"]["fusion"] == 0 and s["modules"]["decoder_half"] == 0
    assert s["prediction"] == "full"


def test_summary_bad_encoder_exits_2_with_one_line(capsys):
    assert main(["summary", "--set", "model.encoder=efficientvit_m0", "--set", "model.pretrained=false"]) == 2
    err = capsys.readouterr().err
    assert "cannot be used" in err and "Traceback" not in err
