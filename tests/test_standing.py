"""Where one method stands among the others (nvpt.robustness.standing, tools/standing.py): rank by mCA, paired gains
with their verdict words, the (trainable parameters, mCA) frontier and its pick, deployed FLOPs counted on real runs."""
import json

import pytest
import torch

from conftest import load_tool
from nvpt.comparison import run_comparison
from nvpt.errors import NVPTError
from nvpt.robustness.compare import compare_runs
from nvpt.robustness.report import summarize
from nvpt.robustness.standing import standing, standing_markdown
from test_compare import tiny_config

torch.set_num_threads(1)


def results(clean: list[float], noisy: list[float]) -> list[dict]:
    return [{**summarize(c, {"gaussian_noise@1": n, "gaussian@0.1": n}), "seed": s}
            for s, (c, n) in enumerate(zip(clean, noisy))]


# a: most robust, many parameters; b: as robust within a's interval, fewer; c: less robust, fewest; d: dominated by b
RUNS = {"a": results([90, 91, 92], [60.0, 62.0, 64.0]), "b": results([93, 94, 95], [59.0, 62.0, 63.0]),
        "c": results([96, 97, 98], [40.0, 41.0, 42.0]), "d": results([90, 90, 90], [50.0, 51.0, 52.0])}
PARAMS = {"a": 5000, "b": 1000, "c": 100, "d": 2000}


def test_rank_gains_frontier_and_pick():
    comp = compare_runs(RUNS, reference="a")
    st = standing(comp, PARAMS, "b")
    assert st["order"] == ["a", "b", "d", "c"] and (st["rank"], st["of"]) == (2, 4)
    # b − a: clean +3 every seed (ahead); mCA −1, 0, −1 (interval across 0: level)
    assert st["gains"]["a"]["clean"]["mean"] == 3.0 and st["gains"]["a"]["word_clean"] == "ahead"
    assert st["gains"]["a"]["mca"]["mean"] == pytest.approx(-2 / 3)
    assert st["gains"]["a"]["word_mca"] == "level" and st["gains"]["c"]["word_mca"] == "ahead"
    assert st["gains"]["c"]["word_clean"] == "behind" and set(st["gains"]) == {"a", "c", "d"}
    assert st["frontier"] == ["c", "b", "a"]  # d: b has more mCA with fewer parameters
    assert st["pick"] == "b"  # a's mean is highest, b's mean reaches the lower end of a's interval
    # a method clearly ahead of all others with the fewest parameters is the pick
    params = {**PARAMS, "a": 50}
    assert standing(comp, params, "a")["pick"] == "a" and standing(comp, params, "a")["frontier"] == ["a"]
    # without parameter counts there is no frontier and no pick, and the table says so
    none = standing(comp, {}, "b")
    assert none["frontier"] == [] and none["pick"] is None
    assert "none (no trainable-parameter counts)" in standing_markdown(none, comp, {})
    with pytest.raises(NVPTError, match="method 'e' is not in the comparison"):
        standing(comp, PARAMS, "e")


def test_standing_tool_on_real_runs(tmp_path, capsys):
    config = tiny_config(tmp_path)
    out = tmp_path / "cmp"
    run_comparison(config, ["prompt.length=4"], ["linear", "vpt_deep", "spike_nvpt"], 2, "vpt_deep", out=out,
                   log=lambda _: None)
    tool = load_tool("standing")
    assert tool.run_main(tool.main, [str(out / "comparison.json"), "--out", str(tmp_path / "standing.md")]) == 0
    text = (tmp_path / "standing.md").read_text()
    assert text == capsys.readouterr().out and "**Rank by mCA: " in text and " of 3.**" in text
    rows = {line.split(" | ")[1]: line.split(" | ") for line in text.splitlines() if line.startswith("| ") and
            line.split(" | ")[1] in ("linear", "vpt_deep", "spike_nvpt") and line.split(" | ")[0][2:].isdigit()}
    assert set(rows) == {"linear", "vpt_deep", "spike_nvpt"}
    # deployed FLOPs: the binary prompts cost what VPT-deep's prompts cost at the same length, more than no prompt
    gflops = {m: float(r[3].split()[0]) for m, r in rows.items()}
    assert gflops["spike_nvpt"] == gflops["vpt_deep"] > gflops["linear"] > 0
    assert "(1.00× linear)" in rows["linear"][3]
    comp = json.loads((out / "comparison.json").read_text())
    assert rows["vpt_deep"][2] == f"{comp['trainable_params']['vpt_deep']:,}"
    # an unknown method: one line, nothing written
    assert tool.run_main(tool.main, [str(out / "comparison.json"), "--method", "lora", "--out",
                                     str(tmp_path / "other.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "method 'lora' is not in the comparison" in err
    assert not (tmp_path / "other.md").exists()
