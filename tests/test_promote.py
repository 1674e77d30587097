"""``denoise promote``: a run's exported model becomes the packaged default, and every
promotion appends to the lineage (here into a scratch weights folder, not the package)."""

from __future__ import annotations

import json

from denoise_core import models
from jobs import promote


def _fake_run(root, steps: int) -> str:
    """A run folder as ``denoise train`` exports it: model/model.keras + model_card.json."""
    run = root / f"run-{steps}"
    (run / "model").mkdir(parents=True)
    models.build_model("unet", widths=(8, 16), blocks_per_level=1).save(run / "model/model.keras")
    card = {"command": f"denoise train --steps {steps}", "steps": steps, "wall_time_s": 1.0,
            "best": {"val_psnr": 30.0 + steps / 1000}, "training": {"init_from": None},
            "architecture": {"name": "unet"}}  # fmt: skip
    (run / "model/model_card.json").write_text(json.dumps(card))
    return str(run)


def test_promote_copies_the_model_and_appends_lineage(tmp_path):
    weights_dir = tmp_path / "weights"
    bench = [tmp_path / "a.json", tmp_path / "b.json"]
    bench[0].write_text(json.dumps({"results": [{"method": "m", "set": "s1"}], "seconds": 2}))
    bench[1].write_text(json.dumps({"results": [{"method": "m", "set": "s2"}], "seconds": 3}))

    first = _fake_run(tmp_path, 100)
    assert promote.main([first, "--to", str(weights_dir), "--note", "first"]) == 0
    second = _fake_run(tmp_path, 200)
    argv = [second, "--to", str(weights_dir), "--benchmark", str(bench[0]),
            "--benchmark", str(bench[1]), "--note", "second"]  # fmt: skip
    assert promote.main(argv) == 0

    shipped = (weights_dir / "default.keras").read_bytes()
    assert shipped == (tmp_path / "run-200/model/model.keras").read_bytes()
    models.load_model(str(weights_dir / "default.keras"))  # loads with safe_mode=True
    card = json.loads((weights_dir / "default_model_card.json").read_text())
    assert [e["steps"] for e in card["lineage"]] == [100, 200]
    assert [e["note"] for e in card["lineage"]] == ["first", "second"]
    assert card["current"]["command"] == "denoise train --steps 200"
    merged = card["lineage"][1]["benchmark"]
    assert [r["set"] for r in merged["results"]] == ["s1", "s2"] and merged["seconds"] == 5
    assert "benchmark" not in card["lineage"][0]


def test_promote_refuses_a_run_without_an_exported_model(tmp_path, capsys):
    assert promote.main([str(tmp_path / "nothing"), "--to", str(tmp_path / "w")]) == 2
    assert "has no exported model" in capsys.readouterr().out
    assert not (tmp_path / "w" / "default.keras").exists()
