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


def _fake_run_of(root, name: str, model, steps: int = 100) -> str:
    """A finished run folder exporting ``model``."""
    run = root / name
    (run / "model").mkdir(parents=True)
    model.save(run / "model/model.keras")
    card = {"command": f"denoise train --steps {steps}", "steps": steps, "wall_time_s": 2.5,
            "data": [{"uri": "/data/cbsd432", "weight": 1.0}], "best": {"val_psnr": 30.0},
            "training": {"init_from": None, "lr": 1e-3}}  # fmt: skip
    (run / "model/model_card.json").write_text(json.dumps(card))
    return str(run)


def test_promote_fast_tier_has_its_own_model_card_and_lineage(tmp_path, capsys):
    weights_dir = tmp_path / "weights"
    default = models.build_model("unet", widths=(8, 16), blocks_per_level=1)
    fast = models.build_model("unet_s2d", widths=(4, 8), blocks_per_level=1)
    assert promote.main([_fake_run_of(tmp_path, "d", default), "--to", str(weights_dir)]) == 0
    default_card = (weights_dir / "default_model_card.json").read_text()

    fast_run = _fake_run_of(tmp_path, "f1", fast, steps=300)
    assert promote.main([fast_run, "--tier", "fast", "--to", str(weights_dir), "--note", "a"]) == 0
    assert "fast tier, unet_s2d" in capsys.readouterr().out
    shipped = (weights_dir / "fast.keras").read_bytes()
    assert shipped == (tmp_path / "f1/model/model.keras").read_bytes()
    assert (weights_dir / "default_model_card.json").read_text() == default_card  # untouched
    card = json.loads((weights_dir / "fast_model_card.json").read_text())
    assert set(card) == set(json.loads(default_card))  # the default card's structure
    info = models.model_info(models.load_model(str(weights_dir / "fast.keras")))
    entry = card["lineage"][0]  # the first promotion starts the lineage
    assert len(card["lineage"]) == 1 and card["current"] == entry
    default_flops = models.model_info(default)["flops_per_megapixel"]
    for arch in (card["architecture"], entry["architecture"]):
        assert arch["name"] == "unet_s2d" and arch["params"] == info["params"]
        assert arch["flops_per_megapixel"] == info["flops_per_megapixel"]
        assert arch["default_flops_per_megapixel"] == default_flops
        assert arch["flops_share_of_default"] == info["flops_per_megapixel"] / default_flops
        assert arch["flops_share_of_default"] <= 0.25
    assert entry["command"] == "denoise train --steps 300" and entry["steps"] == 300
    assert entry["wall_time_s"] == 2.5 and entry["data"][0]["uri"] == "/data/cbsd432"
    assert entry["note"] == "a" and card["training"]["lr"] == 1e-3

    again = _fake_run_of(tmp_path, "f2", fast, steps=400)
    assert promote.main([again, "--tier", "fast", "--to", str(weights_dir)]) == 0
    card = json.loads((weights_dir / "fast_model_card.json").read_text())
    assert [e["steps"] for e in card["lineage"]] == [300, 400]
    assert (weights_dir / "default_model_card.json").read_text() == default_card
    assert json.loads(default_card)["current"]["architecture"]["name"] == "unet"


def test_promote_fast_tier_refuses_more_than_a_quarter_of_the_default_flops(tmp_path, capsys):
    weights_dir = tmp_path / "weights"
    default = models.build_model("unet", widths=(8, 16), blocks_per_level=1)
    assert promote.main([_fake_run_of(tmp_path, "d", default), "--to", str(weights_dir)]) == 0
    same = _fake_run_of(tmp_path, "f", default)
    assert promote.main([same, "--tier", "fast", "--to", str(weights_dir)]) == 2
    out = capsys.readouterr().out
    assert "at most 0.25x the default's FLOPs per megapixel" in out and "1.00x" in out
    assert not (weights_dir / "fast.keras").exists()
    assert not (weights_dir / "fast_model_card.json").exists()


def test_promote_rejects_an_unknown_tier(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        promote.main([_fake_run(tmp_path, 100), "--tier", "tiny", "--to", str(tmp_path / "w")])
    assert "invalid choice: 'tiny'" in capsys.readouterr().err
