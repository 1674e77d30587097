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


def test_promote_last_or_a_step_ships_that_checkpoint(tmp_path, capsys):
    run = tmp_path / "run-300"
    run_uri = _fake_run(tmp_path, 300)
    for attempt, step in (("attempt-001", 100), ("attempt-002", 300)):  # a resumed run
        ckpt = run / "ray" / attempt / f"checkpoint_{step:08d}"
        ckpt.mkdir(parents=True)
        models.build_model("unet", widths=(8, 16), blocks_per_level=step // 100).save(
            ckpt / "model.keras"
        )
        (ckpt / "state.json").write_text(json.dumps({"step": step, "val_psnr": 29.0 + step}))
    weights_dir = tmp_path / "w"

    assert promote.main([run_uri, "--to", str(weights_dir), "--checkpoint", "last"]) == 0
    shipped = (weights_dir / "default.keras").read_bytes()
    assert shipped == (run / "ray/attempt-002/checkpoint_00000300/model.keras").read_bytes()
    card = json.loads((weights_dir / "default_model_card.json").read_text())
    assert card["current"]["promoted_checkpoint"]["step"] == 300
    assert card["current"]["promoted_checkpoint"]["val_psnr"] == 329.0

    assert promote.main([run_uri, "--to", str(weights_dir), "--checkpoint", "100"]) == 0
    shipped = (weights_dir / "default.keras").read_bytes()
    assert shipped == (run / "ray/attempt-001/checkpoint_00000100/model.keras").read_bytes()

    assert promote.main([run_uri, "--to", str(weights_dir), "--checkpoint", "200"]) == 2
    assert promote.main([run_uri, "--to", str(weights_dir), "--checkpoint", "newest"]) == 2
    out = capsys.readouterr().out
    assert "no checkpoint '200'" in out and "best, last or a step" in out
    assert len(json.loads((weights_dir / "default_model_card.json").read_text())["lineage"]) == 2
