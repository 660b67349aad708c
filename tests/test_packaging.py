"""The conda environment and pyproject.toml pin the same packages."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def pins(lines):
    out = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
        if match:
            out[match.group(1).lower()] = match.group(2)
    return out


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = pins(project["dependencies"] + project["optional-dependencies"]["test"]
                  + project["optional-dependencies"]["gpu"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert pins(pip_section) == wanted
    assert "-e ." in pip_section


def test_torch_pins():
    deps = pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert deps["torch"] == "2.14.1" and deps["torchvision"] == "0.29.1" and deps["spikingjelly"] == "0.0.0.0.14"


def test_package_version_matches_pyproject():
    """nvpt is a regular package (not a namespace one) whose __version__ is pyproject's version."""
    import nvpt

    assert nvpt.__file__ is not None and Path(nvpt.__file__).parent == ROOT / "nvpt"
    assert nvpt.__version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
