"""`dvc repro` of the real dvc.yaml, with params shrunk so it runs in a minute or two."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.screen import calibration
from tests.conftest import PARAMS, ROOT, tiny_params

pytestmark = pytest.mark.slow


def test_dvc_repro_generates_trains_and_evaluates(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for d in ("pipeline", "stages", "adaptive"):
        shutil.copytree(ROOT / d, repo / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo)
    p = tiny_params(Path("data/synth"), Path("data/weights"))
    p["generate"] |= {"size": 192}
    p["evaluate"] |= {"data": "data/synth", "weights": "data/weights", "real": "no-real-data-here"}
    (repo / "params.yaml").write_text(yaml.safe_dump(p))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(repo), "DVC_NO_ANALYTICS": "1"}

    def sh(*cmd):
        r = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{cmd}: {r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        return r

    sh("git", "init", "-q")
    sh(sys.executable, "-m", "dvc", "init", "-q")
    # every stage but the hat check, which needs a detector that makes worn calls to learn from (one epoch on 8
    # tiny sites makes few): test_hat_check.py runs its command beside the shipped detector
    stages = [s for s in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"] if s != "train_hat_check"]
    sh(sys.executable, "-m", "dvc", "repro", *stages)
    for w in ("components.pt", "damage.pt", "damage_closeup.pt", "condition.pt", "condition_ee.pt", "safety.pt", "screen_condition.pt", "screen_damage.pt",
              "screen_safety.pt", "damage_gate.pt", "safety_gate.pt"):
        assert (repo / "data" / "weights" / w).stat().st_size > 10_000
    # the damage screen's clean scores at 8 bits (`calibrate_screen`), a small table rather than weights
    table = torch.load(repo / "data" / "weights" / "screen_damage.int8.pt", weights_only=True)
    assert table["task"] == calibration.TASK and table["precision"] == "int8" and len(table["clean"][1]) > 0
    metrics = yaml.safe_load((repo / "data" / "metrics.json").read_text())
    assert 0 <= metrics["components"]["miou_fg"] <= 1 and "skipped" in metrics["real_cracks"]
    assert (repo / "data" / "plots" / "condition_confusion.png").exists()
    # a second repro has nothing to do: the stages are cached
    assert "didn't change" in sh(sys.executable, "-m", "dvc", "repro", *stages).stdout or "up to date" in sh(sys.executable, "-m", "dvc", "status", *stages).stdout


def test_quick_rebuild_runs_the_full_pipelines_commands_into_its_own_folder():
    """data/quick/dvc.yaml is the root pipeline at a smaller size: the same commands on data/quick/params.yaml,
    whose sections only take keys the trainers already read, and nothing it writes lands outside data/quick."""
    full = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    quick_yaml = yaml.safe_load((ROOT / "data" / "quick" / "dvc.yaml").read_text())
    params = yaml.safe_load((ROOT / "data" / "quick" / "params.yaml").read_text())
    p_file = quick_yaml["vars"][0]["P"]
    assert p_file == "data/quick/params.yaml"
    # keys the quick file may add: where a screen's stage and data are, and which weights score the close-up crack sets
    extra = {"config", "data", "closeup"}
    # the precision the segmentation and condition trainers train in (only they read it; fp32 when absent)
    reads_precision = ("pipeline.train.segmentation ", "pipeline.train.condition ")
    for name, stage in quick_yaml["stages"].items():
        assert name in full, name
        assert stage["wdir"] == "../.." and stage["cmd"].replace("${P}", "params.yaml") == full[name]["cmd"], name
        assert stage["params"] == [{p_file: [name]}], name
        allowed = set(PARAMS[name]) | extra | ({"precision"} if any(m in stage["cmd"] for m in reads_precision) else set())
        assert set(params[name]) <= allowed, (name, set(params[name]) - allowed)
        for t in params[name].get("targets", {}).values():
            assert t["data"].startswith("data/quick/") and t["out"].startswith("data/quick/weights/")
        outs = [o if isinstance(o, str) else next(iter(o)) for key in ("outs", "metrics", "plots") for o in stage.get(key, [])]
        assert outs and all(o.startswith("data/quick/") for o in outs), (name, outs)
    for name, section in params.items():
        for key in ("out", "data", "init", "target", "weights", "plots"):
            if key in section:
                assert str(section[key]).startswith("data/quick/"), (name, key, section[key])
