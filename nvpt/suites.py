"""The paper-scale benchmarks: VTAB-1k's 19 tasks in their three groups and the 5 FGVC data sets, the
base_lr x weight_decay grid the VPT reference searches, and its selection rule.

    VTAB[task].classes, VTAB[task].group          # folder names of the get_vtab1k.py export
    FGVC[name].classes, FGVC[name].folder
    suite("vtab") -> [(task, configs/vtab/<task>.yaml), ...]    suite("all"): VTAB then FGVC
    grid("spike_nvpt") -> [(base_lr, weight_decay), ...]        choose(rows) -> the row the rule picks

The VPT reference (Jia et al. 2022, `tune_vtab.py` / `tune_fgvc.py`) trains every grid point once on
train800 (FGVC: train.json), picks the point with the highest top-1 on val200 (FGVC: val.json), then
trains the chosen point with several seeds on train800val200 (FGVC: train.json) and tests each once.
Data, sizes and provenance of every task: docs/datasets.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nvpt.errors import NVPTError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
GROUPS = ("Natural", "Specialized", "Structured")


@dataclass(frozen=True)
class VtabTask:
    classes: int
    group: str
    test_size: int  # images in the test split VTAB-1k tests on (its test.txt)


# In the order of the VTAB-1k tables (and of the list); class counts and test sizes of VTAB-1k.
VTAB = {
    "caltech101": VtabTask(102, "Natural", 6084),
    "cifar": VtabTask(100, "Natural", 10000),
    "dtd": VtabTask(47, "Natural", 1880),
    "oxford_flowers102": VtabTask(102, "Natural", 6149),
    "oxford_iiit_pet": VtabTask(37, "Natural", 3669),
    "svhn": VtabTask(10, "Natural", 26032),
    "sun397": VtabTask(397, "Natural", 21750),
    "patch_camelyon": VtabTask(2, "Specialized", 32768),
    "eurosat": VtabTask(10, "Specialized", 5400),
    "resisc45": VtabTask(45, "Specialized", 6300),
    "diabetic_retinopathy": VtabTask(5, "Specialized", 42670),
    "clevr_count": VtabTask(8, "Structured", 15000),
    "clevr_dist": VtabTask(6, "Structured", 15000),
    "dmlab": VtabTask(6, "Structured", 22735),
    "kitti": VtabTask(4, "Structured", 711),
    "dsprites_loc": VtabTask(16, "Structured", 73728),
    "dsprites_ori": VtabTask(16, "Structured", 73728),
    "smallnorb_azi": VtabTask(18, "Structured", 12150),
    "smallnorb_ele": VtabTask(9, "Structured", 12150),
}
VTAB_TRAIN, VTAB_VAL = 800, 200


@dataclass(frozen=True)
class FgvcSet:
    title: str
    classes: int
    folder: str  # the data set's folder under data.root (its train/val/test.json lie there)
    images: str  # the folder the JSON paths are relative to, below `folder` ("" = the folder itself)
    sizes: tuple[int, int, int]  # train / val / test images of the VPT reference's JSON splits


# The VPT reference's FGVC splits (its Table 7); image folders as its JSONDataset.get_imagedir.
FGVC = {
    "cub": FgvcSet("CUB-200-2011", 200, "CUB_200_2011", "images", (5394, 600, 5794)),
    "nabirds": FgvcSet("NABirds", 555, "nabirds", "images", (21536, 2393, 24633)),
    "oxford_flowers": FgvcSet("Oxford Flowers", 102, "OxfordFlower", "", (1020, 1020, 6149)),
    "stanford_dogs": FgvcSet("Stanford Dogs", 120, "Stanford-dogs", "Images", (10800, 1200, 8580)),
    "stanford_cars": FgvcSet("Stanford Cars", 196, "Stanford-cars", "", (7329, 815, 8041)),
}

BENCHMARKS = ("vtab", "fgvc", "all")
# The VPT reference's prompt grid (tune_vtab.py / tune_fgvc.py: base_lr x weight_decay, lr = base_lr x batch / 256);
# here the linear probe searches the same base learning rates, and full fine-tuning (AdamW,
# configs/recipes/full.yaml) smaller ones around its recipe's 5e-4. --grid-lrs / --grid-wds replace them.
PROMPT_LRS = (5.0, 2.5, 1.0, 0.5, 0.25, 0.1, 0.05)
FULL_LRS = (0.005, 0.001, 0.0005, 0.0001)
WEIGHT_DECAYS = (0.01, 0.001, 0.0001, 0.0)


def suite(benchmark: str) -> list[tuple[str, Path]]:
    """(task, config) of a benchmark, in table order: vtab (19), fgvc (5) or all (24)."""
    if benchmark not in BENCHMARKS:
        raise NVPTError(f"unknown benchmark {benchmark!r}; use one of {', '.join(BENCHMARKS)}")
    vtab = [(task, CONFIGS / "vtab" / f"{task}.yaml") for task in VTAB]
    fgvc = [(name, CONFIGS / "fgvc" / f"{name}.yaml") for name in FGVC]
    return {"vtab": vtab, "fgvc": fgvc, "all": vtab + fgvc}[benchmark]


def group_of(task: str) -> str | None:
    """Natural / Specialized / Structured for a VTAB-1k task, "FGVC" for an FGVC data set, else None."""
    if task in VTAB:
        return VTAB[task].group
    return "FGVC" if task in FGVC else None


def grid(method: str, lrs=None, wds=None) -> list[tuple[float, float]]:
    """The (base_lr, weight_decay) points searched for `method`, largest learning rate first."""
    lrs = tuple(lrs) if lrs else (FULL_LRS if method == "full" else PROMPT_LRS)
    wds = tuple(wds) if wds is not None and len(wds) else WEIGHT_DECAYS
    if min(lrs) <= 0 or min(wds) < 0:
        raise NVPTError(f"the grid needs learning rates > 0 and weight decays >= 0; got {list(lrs)} x {list(wds)}")
    return [(float(lr), float(wd)) for lr in lrs for wd in wds]


def choose(rows: list[dict]) -> dict:
    """The selection rule: the grid point with the highest validation top-1 ("val" of each row); a tie goes
    to the point listed first (larger learning rate, then larger weight decay, as the grid is ordered)."""
    if not rows:
        raise NVPTError("no grid results to choose from")
    best = rows[0]
    for row in rows[1:]:
        if row["val"] > best["val"]:
            best = row
    return best
