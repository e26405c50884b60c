import pytest
import torch

from pipeline.errors import ConfigError, WeightsError
from pipeline.models import checkpoint
from pipeline.runner import FlowConfig, Pipeline, load_flow_config
from stages import load_stage, parse_stage
from tests.conftest import ROOT

SPEC = {"class_path": "adaptive.backbone.Classifier", "init_args": {"num_classes": 4, "widths": [8, 16]}}


@pytest.fixture
def cond_weights(tmp_path):
    p = tmp_path / "cond.pt"
    checkpoint.save(p, checkpoint.build(SPEC), SPEC, "condition_classification", ["a", "b", "c", "d"], {"crop_size": 32})
    return p


def _write(tmp_path, text, name="stage.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_malformed_yaml_names_file_and_line(tmp_path):
    p = _write(tmp_path, "type: damage_segmentation\nmodel: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_stage(p)
    assert "stage.yaml" in str(e.value) and "line" in str(e.value)


def test_unknown_stage_type_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_stage(_write(tmp_path, "type: crack_finder\nmodel: x.pt\n"))
    assert "crack_finder" in str(e.value) and "damage_segmentation" in str(e.value)


def test_a_flow_config_or_a_typeless_file_given_as_a_stage_says_what_it_is(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_stage(ROOT / "flows" / "configs" / "site-safety.yaml")
    assert "is a flow config" in e.value.what and "inspectflow run" in e.value.fix
    with pytest.raises(ConfigError) as e:
        load_stage(_write(tmp_path, "model: x.pt\n"))
    assert "no `type:` key" in e.value.what and "damage_segmentation" in e.value.fix


def test_unknown_key_is_named_with_allowed_keys(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_stage(_write(tmp_path, "type: damage_segmentation\nmodel: x.pt\ntreshold: 0.5\n"))
    msg = str(e.value)
    assert "treshold" in msg and "input_scale" in msg and "stage.yaml" in msg


def test_bad_value_is_named(tmp_path):
    with pytest.raises(ConfigError, match="input_scale"):
        parse_stage(_write(tmp_path, "type: damage_segmentation\nmodel: x.pt\ninput_scale: -1\n"))


def test_missing_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(WeightsError) as e:
        load_stage(_write(tmp_path, "type: damage_segmentation\nmodel: missing.pt\n"))
    assert "missing.pt" in str(e.value) and "dvc repro" in str(e.value)


def test_weights_for_the_wrong_task(tmp_path, cond_weights):
    with pytest.raises(WeightsError) as e:
        load_stage({"type": "damage_segmentation", "model": str(cond_weights)})
    assert "condition_classification" in str(e.value) and "damage_segmentation" in str(e.value)


def test_corrupt_weights(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="bad.pt"):
        load_stage({"type": "damage_segmentation", "model": str(bad)})


def test_weights_load_relative_to_config_and_round_trip(tmp_path, cond_weights):
    stage = load_stage(_write(tmp_path, "type: component_condition\nmodel: cond.pt\n"))
    assert stage.cfg.model == cond_weights.resolve()
    assert stage.meta["meta"]["crop_size"] == 32
    x = torch.zeros(2, 3, 32, 32)
    assert stage.model(x).shape == (2, 4)


def test_stage_chain_must_be_satisfiable(tmp_path, cond_weights):
    cfg = FlowConfig(stages=[{"type": "component_condition", "model": str(cond_weights)}])
    with pytest.raises(ConfigError, match="component_mask"):
        Pipeline.from_config(cfg, tmp_path)


def test_flow_config_unknown_key(tmp_path):
    p = _write(tmp_path, "stages: [a.yaml]\nchunk_size: 5\n", "flow.yaml")
    with pytest.raises(ConfigError, match="chunk_size"):
        load_flow_config(p)


def test_shipped_configs_validate():
    from pipeline.runner import DEFAULT_CONFIGS

    cfg, base = load_flow_config(DEFAULT_CONFIGS / "damage-survey.yaml")
    for s in cfg.stages:
        cls, stage_cfg = parse_stage(s, base)
        assert stage_cfg.model.name.endswith(".pt")



def test_every_shipped_stage_config_validates_and_the_photo_rule_tracks_the_flows():
    configs = sorted((ROOT / "stages" / "configs").glob("*.yaml"))
    parsed = {p.name: parse_stage(p)[1] for p in configs}
    assert {"hardhat_rule.yaml", "hardhat_rule_photos.yaml", "safety_photos.yaml"} <= set(parsed)
    # the photo rule is the flow's with fainter heads kept, mirror-padded borders read (video frames have
    # none), a hat check, and faint violations written as unknown (a flow waits for a violation to persist
    # instead): any other change belongs in both files
    flow, photos = parsed["hardhat_rule.yaml"], parsed["hardhat_rule_photos.yaml"]
    loose = {"head_conf", "person_conf"}
    photo_only = {"mirrored_borders", "hat_check", "head_check", "head_check_threshold", "no_hat_min_score"}
    assert flow.model_dump(exclude=loose | photo_only) == photos.model_dump(exclude=loose | photo_only)
    assert all(getattr(photos, k) < getattr(flow, k) for k in loose)
    assert photos.mirrored_borders and not flow.mirrored_borders and photos.hat_check and not flow.hat_check
    assert photos.no_hat_min_score > 0 == flow.no_hat_min_score and photos.head_check and not flow.head_check


def _ee_weights(tmp_path):
    spec = {"class_path": "adaptive.model.EarlyExitClassifier",
            "init_args": {"num_classes": 4, "widths": [8, 16, 16], "exits": [0, 1], "threshold": 0.9}}
    p = tmp_path / "cond_ee.pt"
    checkpoint.save(p, checkpoint.build(spec), spec, "condition_classification", ["a", "b", "c", "d"], {"crop_size": 32})
    return p


def _flow(tmp_path, text):
    return load_flow_config(_write(tmp_path, text, "flow.yaml"))


def test_budget_sets_reuse_and_stage_settings_unless_the_config_does(tmp_path, cond_weights):
    seg = "{type: component_segmentation, model: seg.pt}"
    ee = _ee_weights(tmp_path)
    stages = f"stages: [{{type: component_condition, model: {ee}}}]\n"

    def build(text):
        cfg, base = _flow(tmp_path, text)
        # the chain needs masks before the condition stage; check the preset on its own
        from pipeline.budget import apply_to_stage

        cls, sc = parse_stage(cfg.stages[0], base)
        return cfg, cls(apply_to_stage(sc, cfg.budget_preset()["stages"].get(cls.type_name, {})))

    cfg, st = build(stages + "budget: full\n")
    assert not cfg.reuse_settings().enabled and st.model.cfg.threshold == 1.0
    cfg, st = build(stages + "budget: fast\n")
    r = cfg.reuse_settings()
    assert (r.enabled, r.mode, r.max_run) == (True, "motion", 5) and st.model.cfg.threshold == 0.75
    cfg, st = build(stages + "budget: balanced\n")
    assert cfg.reuse_settings().mode == "motion" and st.model.cfg.threshold == 0.9  # the checkpoint's calibrated one
    # explicit settings win: a reuse key in the flow, a threshold in the stage
    cfg, st = build(f"stages: [{{type: component_condition, model: {ee}, exit_threshold: 0.6}}]\nbudget: fast\nreuse: {{max_run: 2}}\n")
    r = cfg.reuse_settings()
    assert (r.enabled, r.mode, r.max_run) == (True, "motion", 2) and st.model.cfg.threshold == 0.6
    # a preset threshold is ignored by a single-exit model; an explicit one is an error
    cfg, st = build(f"stages: [{{type: component_condition, model: {cond_weights}}}]\nbudget: full\n")
    assert not hasattr(st.model, "infer")
    with pytest.raises(ConfigError, match="exit_threshold"):
        build(f"stages: [{{type: component_condition, model: {cond_weights}, exit_threshold: 0.5}}]\n")
    with pytest.raises(ConfigError, match="budget"):
        _flow(tmp_path, f"stages: [{seg}]\nbudget: turbo\n")


def test_shipped_component_scale_follows_the_budget_unless_set():
    """The shipped component config leaves input_scale to the budget: the trained 0.5 at full and
    balanced, 0.375 at fast; a scale written in a flow's stage still wins."""
    flow = ROOT / "flows" / "configs" / "damage-survey.yaml"

    def scale(budget, stage=None):
        cfg, base = load_flow_config(flow)
        cfg = cfg.model_copy(update={"budget": budget, **({"stages": [stage]} if stage else {})})
        comp = next(s for s in Pipeline.from_config(cfg, base).stages if s.type_name == "component_segmentation")
        return comp._scale()

    assert (scale("full"), scale("balanced"), scale("fast")) == (0.5, 0.5, 0.375)
    own = {"type": "component_segmentation", "model": str(ROOT / "data" / "weights" / "components.pt"), "input_scale": 0.25}
    assert scale("fast", own) == 0.25


def test_site_safety_refuses_motion_reuse(tmp_path):
    from flows.site_safety import load_config

    with pytest.raises(ConfigError, match="still"):
        load_config(_write(tmp_path, "stages: [a.yaml]\nreuse: {mode: motion}\n", "flow.yaml"))


def test_device_is_validated_and_an_absent_gpu_is_named(tmp_path, cond_weights):
    with pytest.raises(ConfigError, match="device"):
        parse_stage({"type": "component_condition", "model": str(cond_weights), "device": "gpu0"})
    import torch

    from stages import load_stage

    absent = f"cuda:{torch.cuda.device_count()}"  # one past the last visible GPU, on any machine
    with pytest.raises(ConfigError, match="is not here") as e:
        load_stage({"type": "component_condition", "model": str(cond_weights), "device": absent})
    assert "device: cpu" in e.value.fix


def test_condition_carries_states_across_camera_motion(cond_weights):
    import numpy as np

    from pipeline.core import Frame, FrameResult
    from stages import load_stage

    stage = load_stage({"type": "component_condition", "model": str(cond_weights), "carry_iou": 0.8, "min_area": 100})
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 240, 3), dtype=np.uint8)

    def view(shift, motion, beam_at=150):
        m = np.zeros((120, 240), np.uint8)
        m[20:100, 20 + shift : 90 + shift] = 1  # a wall moving with the camera
        m[30:60, beam_at : beam_at + 30] = 2  # a static beam: 6 px of camera motion leaves it at IoU 0.67
        return FrameResult(Frame(0, img, 0.0, "t"), component_mask=m, damage_mask=np.zeros_like(m), motion=motion)

    # the wall moves 6 px per computed frame; the beam jumps in the second view, so only the wall may carry
    a, b, c, d = view(0, None), view(6, (6.0, 0.0), beam_at=100), view(12, (6.0, 0.0)), view(18, None)
    stage.process([a, b, c, d])
    walls = [next(k for k in r.components if k.class_id == 1) for r in (a, b, c, d)]
    assert stage.counters()["carried"] == 1  # b's wall; c's would be a carry of a carry (carry_max 1); d did not match
    assert walls[1].state_scores is walls[0].state_scores
    assert all(k.state is not None for r in (a, b, c, d) for k in r.components if k.class_id in (1, 2))
    stage.process([view(24, (6.0, 0.0))])  # across batches too
    assert stage.counters()["carried"] == 2
    stage.reset()
    stage.process([view(30, (6.0, 0.0))])  # a new run carries nothing
    assert stage.counters()["carried"] == 2


def test_class_bias_is_checked_against_the_stages_classes_and_moves_the_argmax(tmp_path):
    with pytest.raises(ConfigError) as e:
        parse_stage(_write(tmp_path, "type: damage_segmentation\nmodel: x.pt\nclass_bias: {cracks: -0.5}\n"))
    assert "cracks" in str(e.value) and "crack" in str(e.value).replace("cracks", "") and "stage.yaml" in str(e.value)
    with pytest.raises(ConfigError, match="crack"):
        parse_stage(_write(tmp_path, "type: component_segmentation\nmodel: x.pt\nclass_bias: {crack: 1}\n"))

    import numpy as np

    img = np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8)
    spec = {"type": "damage_segmentation", "model": str(ROOT / "data" / "weights" / "damage.pt"), "input_scale": 1.0}
    plain = load_stage(spec).predict([img])[0]
    assert (load_stage({**spec, "class_bias": {"crack": 0.0}}).predict([img])[0] == plain).all()
    assert (load_stage({**spec, "class_bias": {"crack": 100.0}}).predict([img])[0] == 1).all()
    assert (load_stage({**spec, "class_bias": {"background": 100.0}}).predict([img])[0] == 0).all()


def test_min_area_drops_small_pieces_of_a_class_and_names_must_be_classes():
    import numpy as np

    from stages.segmentation import DamageConfig, _drop_small

    m = np.zeros((40, 40), np.uint8)
    m[2:4, 2:6] = 1  # 8 px of crack
    m[10:30, 20] = 1  # 20 px of crack
    m[30:33, 2:5] = 2  # 9 px of spall: another class, left alone
    out = _drop_small(m, {1: 20})
    assert out[2:4, 2:6].sum() == 0 and (out[10:30, 20] == 1).all() and (out[30:33, 2:5] == 2).all()
    assert (m[2:4, 2:6] == 1).all()  # the input is not changed
    with pytest.raises(ValueError, match="min_area names 'crak'"):
        DamageConfig(type="damage_segmentation", min_area={"crak": 20})
