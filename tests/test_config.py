"""Config: inheritance, overrides, round trip and every error path."""
import pytest
import yaml

from nvpt.config import SCHEMA, describe_keys, dump_config, load_config
from nvpt.errors import NVPTError


def write(path, text):
    path.write_text(text)
    return path


def test_defaults_cover_every_key():
    cfg = load_config()
    for name, key in SCHEMA.items():
        assert cfg.get_path(name) == key.default
    assert cfg.prompt.method == "spike_nvpt" and cfg.spike.backend == "auto"


def test_base_inheritance_and_overrides(tmp_path):
    write(tmp_path / "root.yaml", "seed: 3\ntrain: {epochs: 50, base_lr: 0.5}\nprompt: {length: 20}\n")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "mid.yaml", "_base_: root.yaml\ntrain: {epochs: 20}\n")
    child = write(tmp_path / "sub" / "child.yaml", "_base_: [../mid.yaml]\nprompt: {method: vpt_deep}\n")
    cfg = load_config(child, ["train.epochs=7", "spike.noise_std=0.25", "eval.gaussian_std=[0.1, 0.2]", "run_name=123"])
    assert cfg.seed == 3 and cfg.train.base_lr == 0.5 and cfg.prompt.length == 20  # from root
    assert cfg.prompt.method == "vpt_deep"  # from the child
    assert cfg.train.epochs == 7 and cfg.spike.noise_std == 0.25 and cfg.eval.gaussian_std == [0.1, 0.2]
    assert cfg.run_name == "123"


def test_dump_and_load_back_identically(tmp_path):
    cfg = load_config(None, ["prompt.method=vpt_shallow", "train.clip_grad=1.5", "data.mean=[0.1,0.2,0.3]", "data.std=[1,1,1]"])
    path = tmp_path / "resolved.yaml"
    dump_config(cfg, path)
    assert load_config(path) == cfg
    assert isinstance(load_config(path).data.std[0], float)


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted(Path(__file__).parent.parent.glob("configs/**/*.yaml"))
    assert configs, "no configs shipped"
    for path in configs:
        load_config(path)


@pytest.mark.parametrize("override,message", [
    (["prompt.lenght=5"], r"unknown config key 'prompt.lenght'.*did you mean: prompt.length"),
    (["spike.time_step=4"], r"did you mean: spike.time_steps"),
    (["nonsense"], r"must look like key.sub=value"),
    (["train.epochs=ten"], r"'train.epochs' must be an integer, got 'ten'"),
    (["train.epochs=0"], r"'train.epochs' must be >= 1"),
    (["spike.v_threshold=0"], r"'spike.v_threshold' must be > 0"),
    (["prompt.dropout=1.5"], r"'prompt.dropout' must be <= 1.0"),
    (["prompt.method=vpt"], r"'prompt.method' must be one of linear, vpt_shallow, vpt_deep, spike_nvpt, full"),
    (["spike.backend=cuda"], r"must be one of auto, cupy, torch"),
    (["model.pretrained=maybe"], r"'model.pretrained' must be true or false"),
    (["model.name=null"], r"'model.name' may not be null"),
    (["eval.gaussian_std=0.1"], r"must be a list of floats"),
    (["train.base_lr=.nan"], r"must be a finite number"),
    (["data.mean=[0.5,0.5,0.5]"], r"data.mean and data.std must be given together"),
    (["data.name=vtab"], r"'data.task' must name the VTAB task folder"),
    (["prompt.length=0"], r"'prompt.length' must be >= 1 for prompt.method=spike_nvpt"),
])
def test_override_errors(override, message):
    with pytest.raises(NVPTError, match=message):
        load_config(None, override)


def test_file_errors(tmp_path):
    with pytest.raises(NVPTError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad_key = write(tmp_path / "bad.yaml", "spike:\n  treshold: 1.0\n")
    with pytest.raises(NVPTError, match=r"unknown config key 'spike.treshold'.*did you mean: spike.v_threshold"):
        load_config(bad_key)
    section = write(tmp_path / "section.yaml", "modle:\n  name: x\n")
    with pytest.raises(NVPTError, match=r"unknown config key 'modle'"):
        load_config(section)
    loop_a = write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(NVPTError, match="loops back"):
        load_config(loop_a)
    not_mapping = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(NVPTError, match="expected a mapping"):
        load_config(not_mapping)


def test_python_object_tags_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = write(tmp_path / "evil.yaml",
                 f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(NVPTError, match="not valid safe YAML"):
        load_config(evil)
    assert not marker.exists()


def test_describe_keys_lists_every_key():
    table = describe_keys()
    assert all(f"`{name}`" in table for name in SCHEMA)
    assert yaml.safe_load(dump_config(load_config()))["spike"]["time_steps"] == SCHEMA["spike.time_steps"].default


def test_docs_config_table_is_current():
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "config.md").read_text()
    assert describe_keys() in doc, "docs/config.md is stale: regenerate it with describe_keys()"
