"""Robustness report: summaries, writers and seed statistics on hand-made numbers."""
import csv
import json
import math

import pytest
import torch

from nvpt.errors import NVPTError
from nvpt.robustness.report import (
    CSV_COLUMNS,
    aggregate_seeds,
    markdown_table,
    paired_gain,
    parse_set_key,
    set_key,
    side_by_side_markdown,
    summarize,
    t_critical_95,
    write_csv,
    write_json,
)

torch.set_num_threads(1)

# Values chosen to be exact in binary floating point, so equalities are exact.
OURS = {"gaussian@0.1": 40.0, "gaussian_noise@3": 50.0, "gaussian_noise@1": 70.0, "shot_noise@2": 60.0}
REF = {"gaussian_noise@1": 60.0, "gaussian_noise@3": 40.0, "shot_noise@2": 62.0, "gaussian@0.1": 36.0}


def test_set_keys_round_trip():
    assert set_key("gaussian_noise", 3, None) == "gaussian_noise@3"
    assert set_key("gaussian", None, 0.1) == "gaussian@0.1"
    assert parse_set_key("gaussian_noise@3") == ("gaussian_noise", 3, None)
    assert parse_set_key("gaussian@0.05") == ("gaussian", None, 0.05)
    for sigma in (0.1, 1e-05, 0.3333333333333333, 2.0):
        assert parse_set_key(set_key("gaussian", None, sigma)) == ("gaussian", None, sigma)


def test_summarize_without_reference():
    s = summarize(80.0, OURS)
    assert s["clean"] == 80.0
    assert list(s["sets"]) == ["gaussian_noise@1", "gaussian_noise@3", "shot_noise@2", "gaussian@0.1"]
    assert s["sets"]["gaussian_noise@3"] == {"corruption": "gaussian_noise", "severity": 3, "sigma": None,
                                             "accuracy": 50.0, "relative": 0.625, "diff_to_reference": None}
    assert s["sets"]["gaussian@0.1"]["sigma"] == 0.1 and s["sets"]["gaussian@0.1"]["relative"] == 0.5
    assert s["corruptions"]["gaussian_noise"] == {"accuracy": 60.0, "n_sets": 2, "relative": 0.75,
                                                  "diff_to_reference": None}
    assert s["corruptions"]["shot_noise"]["accuracy"] == 60.0
    assert s["corruptions"]["gaussian"]["accuracy"] == 40.0
    assert s["mean_corrupted"] == 55.0  # (70 + 50 + 60 + 40) / 4
    assert s["relative_robustness"] == 55.0 / 80.0
    assert s["diff_to_reference"] is None


def test_summarize_with_reference():
    ref = summarize(64.0, REF)
    s = summarize(80.0, OURS, reference=ref)
    assert s["sets"]["gaussian_noise@1"]["diff_to_reference"] == 10.0
    assert s["sets"]["shot_noise@2"]["diff_to_reference"] == -2.0
    assert s["sets"]["gaussian@0.1"]["diff_to_reference"] == 4.0
    assert s["corruptions"]["gaussian_noise"]["diff_to_reference"] == 10.0  # 60 - 50
    assert s["corruptions"]["shot_noise"]["diff_to_reference"] == -2.0
    assert s["diff_to_reference"]["clean"] == 16.0
    assert s["diff_to_reference"]["mean_corrupted"] == 55.0 - 49.5
    assert s["diff_to_reference"]["relative_robustness"] == 55.0 / 80.0 - 49.5 / 64.0


def test_reference_with_other_sets_gives_no_mean_diff():
    ref = summarize(64.0, {"gaussian_noise@1": 60.0, "shot_noise@2": 62.0})
    s = summarize(80.0, OURS, reference=ref)
    assert s["sets"]["gaussian_noise@1"]["diff_to_reference"] == 10.0
    assert s["sets"]["gaussian_noise@3"]["diff_to_reference"] is None
    assert s["corruptions"]["gaussian_noise"]["diff_to_reference"] is None  # means over different sets
    assert s["corruptions"]["shot_noise"]["diff_to_reference"] == -2.0
    assert s["diff_to_reference"] == {"clean": 16.0, "mean_corrupted": None, "relative_robustness": None}


def test_summarize_edge_cases():
    s = summarize(0.0, {"shot_noise@1": 0.0})
    assert s["sets"]["shot_noise@1"]["relative"] is None and s["relative_robustness"] is None
    s = summarize(75.0, {})
    assert s["sets"] == {} and s["mean_corrupted"] is None and s["relative_robustness"] is None
    assert markdown_table(s).count("\n") == 3  # header, rule, clean


def test_csv_and_json(tmp_path):
    s = summarize(80.0, OURS, reference=summarize(64.0, REF))
    csv_path = write_csv(s, tmp_path / "out" / "robustness.csv")
    rows = list(csv.DictReader(open(csv_path, newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["set"] for r in rows] == ["clean", "gaussian_noise@1", "gaussian_noise@3", "mean:gaussian_noise",
                                        "shot_noise@2", "mean:shot_noise", "gaussian@0.1", "mean:gaussian",
                                        "family:noise", "mean_corrupted"]
    assert float(by_set_noise(rows)["accuracy"]) == 60.0 and float(by_set_noise(rows)["diff_to_reference"]) == 6.0
    by_set = {r["set"]: r for r in rows}
    assert by_set["gaussian_noise@3"]["severity_or_sigma"] == "3"
    assert by_set["gaussian@0.1"]["severity_or_sigma"] == "0.1"
    assert float(by_set["gaussian_noise@3"]["accuracy"]) == 50.0
    assert float(by_set["gaussian_noise@3"]["relative"]) == 0.625
    assert float(by_set["gaussian_noise@3"]["diff_to_reference"]) == 10.0
    assert float(by_set["mean_corrupted"]["accuracy"]) == 55.0
    assert float(by_set["clean"]["diff_to_reference"]) == 16.0

    json_path = write_json(s, tmp_path / "robustness.json")
    assert json.loads(json_path.read_text()) == s
    assert [p.name for p in tmp_path.rglob("*.tmp")] == []  # no temp files left behind

    empty = write_csv(summarize(70.0, {}), tmp_path / "empty.csv")
    assert [r["diff_to_reference"] for r in csv.DictReader(open(empty, newline=""))] == [""]


def by_set_noise(rows):
    return next(r for r in rows if r["set"] == "family:noise")


def test_family_means():
    s = summarize(80.0, {"gaussian_noise@1": 70.0, "speckle_noise@1": 60.0, "fog@2": 40.0, "defocus_blur@1": 50.0,
                         "gaussian_blur@5": 30.0, "saturate@3": 65.0, "gaussian@0.1": 20.0})
    # speckle_noise, gaussian_blur and saturate (ImageNet-C's extras) count in their families
    assert s["families"] == {
        "noise": {"accuracy": 65.0, "n_sets": 2, "corruptions": ["gaussian_noise", "speckle_noise"],
                  "relative": 65.0 / 80.0, "diff_to_reference": None},
        "blur": {"accuracy": 40.0, "n_sets": 2, "corruptions": ["defocus_blur", "gaussian_blur"],
                 "relative": 0.5, "diff_to_reference": None},
        "weather": {"accuracy": 40.0, "n_sets": 1, "corruptions": ["fog"], "relative": 0.5, "diff_to_reference": None},
        "digital": {"accuracy": 65.0, "n_sets": 1, "corruptions": ["saturate"], "relative": 65.0 / 80.0,
                    "diff_to_reference": None},
    }
    assert s["mean_corrupted"] == 335.0 / 7  # gaussian@sigma sets count in the mCA, in no family
    ref = summarize(70.0, {"gaussian_noise@1": 60.0, "speckle_noise@1": 60.0, "fog@2": 45.0})
    diffs = {f: v["diff_to_reference"] for f, v in summarize(80.0, {"gaussian_noise@1": 70.0, "speckle_noise@1": 60.0,
                                                                    "fog@2": 40.0, "defocus_blur@1": 50.0},
                                                             reference=ref)["families"].items()}
    assert diffs == {"noise": 5.0, "blur": None, "weather": -5.0}  # blur: the reference has no blur sets
    assert summarize(70.0, {"gaussian@0.1": 50.0})["families"] == {}


def _parse_markdown(text):
    lines = text.strip().splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert set(lines[1].replace("|", "")) <= set("-:")
    return head, {cells[0]: cells[1:] for cells in
                  ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}


def test_markdown_table():
    head, rows = _parse_markdown(markdown_table(summarize(80.0, OURS)))
    assert head == ["set", "accuracy", "relative"]
    assert rows["clean"] == ["80.00", "1.000"]
    assert rows["gaussian_noise@3"] == ["50.00", "0.625"]
    assert rows["mean:gaussian_noise"] == ["60.00", "0.750"]
    assert rows["family:noise"] == ["60.00", "0.750"]
    assert rows["mean_corrupted"] == ["55.00", "0.688"]

    head, rows = _parse_markdown(markdown_table(summarize(80.0, OURS, reference=summarize(64.0, REF))))
    assert head == ["set", "accuracy", "relative", "Δ ref"]
    assert rows["clean"][2] == "+16.00" and rows["shot_noise@2"][2] == "-2.00"


def test_side_by_side_markdown():
    text = side_by_side_markdown({"vpt_deep": summarize(64.0, REF),
                                  "spike_nvpt": summarize(80.0, {"gaussian_noise@1": 70.0, "impulse_noise@5": 30.0})})
    head, rows = _parse_markdown(text)
    assert head == ["set", "vpt_deep", "spike_nvpt"]
    assert list(rows) == ["clean", "gaussian_noise@1", "gaussian_noise@3", "shot_noise@2", "impulse_noise@5",
                          "gaussian@0.1", "family:noise", "mean corrupted (mCA)"]
    assert rows["family:noise"] == ["**54.00**", "50.00"]  # (60 + 40 + 62) / 3 and (70 + 30) / 2
    assert rows["clean"] == ["64.00", "**80.00**"]
    assert rows["gaussian_noise@3"] == ["40.00", "n/a"]  # a single value is not marked best
    assert rows["impulse_noise@5"] == ["n/a", "30.00"]
    assert rows["mean corrupted (mCA)"] == ["49.50", "**50.00**"]


def test_t_critical_matches_student_t():
    # Integrate the Student t density from 0 to t(0.975, df); the shortfall from 0.475,
    # divided by the density there, is the error of the quantile itself.
    def quantile_error(df, n=200_001):
        q = t_critical_95(df)
        log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
        t = torch.linspace(0, q, n, dtype=torch.float64)
        pdf = torch.exp(log_norm - (df + 1) / 2 * torch.log1p(t * t / df))
        return (torch.trapezoid(pdf, t).item() - 0.475) / pdf[-1].item()

    assert t_critical_95(4) == pytest.approx(2.776, abs=5e-4)
    for df in list(range(1, 31)) + [31, 45, 100, 1000]:
        assert abs(quantile_error(df)) < 2e-7, df


def test_aggregate_seeds_by_hand():
    agg = aggregate_seeds([1, 2, 3, 4, 5])
    assert agg["mean"] == 3.0 and agg["n"] == 5
    assert agg["std"] == pytest.approx(math.sqrt(2.5))  # 1.5811
    half = t_critical_95(4) * math.sqrt(2.5) / math.sqrt(5)
    assert half == pytest.approx(1.963, abs=1e-3)
    assert agg["ci95_low"] == pytest.approx(3 - half) and agg["ci95_high"] == pytest.approx(3 + half)
    assert aggregate_seeds([7.5]) == {"mean": 7.5, "std": None, "n": 1, "ci95_low": None, "ci95_high": None}
    same = aggregate_seeds([2.0, 2.0, 2.0])
    assert same["std"] == 0.0 and same["ci95_low"] == same["ci95_high"] == 2.0


def test_paired_gain():
    gain = paired_gain([81.0, 82.0, 80.0], [79.0, 81.0, 77.0])  # differences 2, 1, 3
    assert gain == aggregate_seeds([2.0, 1.0, 3.0])
    assert gain["mean"] == 2.0 and gain["std"] == 1.0
    assert gain["ci95_low"] == pytest.approx(2.0 - 4.3026527 / math.sqrt(3))


@pytest.mark.parametrize("call,expect", [
    (lambda: set_key("fogg", 1, None), "valid:"),
    (lambda: set_key("gaussian", 1, None), "not a severity"),
    (lambda: parse_set_key("gaussian_noise"), "expected <corruption>@<severity>"),
    (lambda: parse_set_key("gaussian_noise@x"), "not a severity"),
    (lambda: parse_set_key("gaussian@x"), "not a sigma"),
    (lambda: parse_set_key("shot_noise@9"), "1, 2, 3, 4, 5"),
    (lambda: summarize(101.0, {}), "0..100"),
    (lambda: summarize(80.0, {"shot_noise@1": float("nan")}), "0..100"),
    (lambda: summarize(80.0, {"gaussian@0.1": 1.0, "gaussian@0.10": 2.0}), "twice"),
    (lambda: summarize(80.0, [("shot_noise@1", 1.0)]), "dict"),
    (lambda: summarize(80.0, {}, reference={"clean": 1.0}), "summarize()"),
    (lambda: side_by_side_markdown({}), "at least one"),
    (lambda: aggregate_seeds([]), "at least one"),
    (lambda: aggregate_seeds([1.0, float("inf")]), "finite"),
    (lambda: paired_gain([1.0, 2.0], [1.0]), "one value per seed"),
    (lambda: t_critical_95(0), "positive integer"),
])
def test_errors(call, expect):
    with pytest.raises(NVPTError) as err:
        call()
    assert "\n" not in str(err.value) and expect in str(err.value)
