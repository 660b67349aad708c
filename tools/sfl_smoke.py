"""A short spike_nvpt training run that records every Signal Filtering Layer call and checks them.

    python tools/sfl_smoke.py OUT_DIR REPORT.json [--device cuda] [--amp-dtype bfloat16]

On CUDA (what tools/gpu_check.sh runs) it trains 2 epochs of the demo config under AMP and
asserts that `spike.backend=auto` picked the CuPy kernel and that the SFL ran in float32
outside autocast. On CPU (what the test suite runs, to keep this script working) it asserts
the torch backend instead, without AMP. Either way every SFL call is in the JSON report.
"""
import json
import math
import sys
from pathlib import Path

import _bootstrap  # noqa: F401
import torch

from nvpt.cli import parser, run_main
from nvpt.config import load_config
from nvpt.engine.checkpoint import atomic_write_text
from nvpt.pipeline import run_training
from nvpt.errors import NVPTError
from nvpt.outputs import check_output
from nvpt.spiking import signal_filter


def record_sfl_calls() -> list[dict]:
    """Wrap SignalFilteringLayer.forward: one dict per call (backend, dtypes, autocast, training or not)."""
    seen = []
    original = signal_filter.SignalFilteringLayer.forward

    def recorded(self, currents, *args, **kwargs):
        out = original(self, currents, *args, **kwargs)
        spikes = out[0] if isinstance(out, tuple) else out  # (spikes, v) with return_v=True
        seen.append({"backend": self.backend, "in": str(currents.dtype), "out": str(spikes.dtype),
                     "device": currents.device.type, "autocast": torch.is_autocast_enabled(currents.device.type),
                     # a view made under no_grad still says requires_grad: ask autograd's mode too
                     "grad": torch.is_grad_enabled() and currents.requires_grad})
        return out

    signal_filter.SignalFilteringLayer.forward = recorded
    return seen


def main(argv):
    p = parser("Train spike_nvpt briefly and check every Signal Filtering Layer call (backend, dtype, autocast).")
    p.add_argument("out_dir", help="folder for the short run")
    p.add_argument("report", help="JSON report of the SFL calls and the run")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--amp-dtype", choices=("bfloat16", "float16"), default="bfloat16", help="CUDA only")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise NVPTError("--device cuda but CUDA is not available; run with --device cpu for the CPU check")
    check_output(args.report, what="report")  # before training
    seen = record_sfl_calls()
    cfg = load_config(_bootstrap.ROOT / "configs/demo/spike_nvpt.yaml", [
        "model.pretrained_file=null", f"train.device={args.device}", f"train.amp={str(cuda).lower()}",
        f"train.amp_dtype={args.amp_dtype}", "spike.backend=auto", "train.epochs=2", "train.warmup_epochs=0",
        "data.train_per_class=16", "data.test_per_class=8", "eval.gaussian_std=[0.1]",
        f"train.threads={4 if cuda else 1}", f"output_dir={args.out_dir}"])
    result = run_training(cfg, log=print, show_progress=False)
    trained = [s for s in seen if s["grad"]]
    report = {"device": args.device, "amp": args.amp_dtype if cuda else None,
              "sfl_calls": len(seen), "sfl_training_calls": len(trained),
              "backends": sorted({s["backend"] for s in seen}), "input_dtypes": sorted({s["in"] for s in seen}),
              "output_dtypes": sorted({s["out"] for s in seen}), "devices": sorted({s["device"] for s in seen}),
              "autocast_inside_sfl": sorted({s["autocast"] for s in seen}),
              "history": result.history, "clean_acc": result.summary["clean"]}
    print(json.dumps({k: v for k, v in report.items() if k != "history"}))
    atomic_write_text(Path(args.report), json.dumps(report, indent=1) + "\n")
    expected_backend = "cupy" if cuda else "torch"
    checks = [
        (bool(trained), "no SFL call with gradients: spike_nvpt did not train"),
        (report["backends"] == [expected_backend], f"auto picked {report['backends']}, expected {expected_backend}"),
        (report["input_dtypes"] == report["output_dtypes"] == ["torch.float32"], "the SFL did not run in float32"),
        (report["devices"] == [args.device], f"the SFL ran on {report['devices']}, expected {args.device}"),
        (report["autocast_inside_sfl"] == [False], "autocast was on inside the SFL"),
        (all(math.isfinite(h["train_loss"]) for h in result.history), "a training loss is not finite"),
    ]
    failed = [message for ok, message in checks if not ok]
    if failed:
        raise NVPTError("SFL smoke check failed: " + "; ".join(failed))
    amp = f"inside {args.amp_dtype} autocast training" if cuda else "without AMP"
    print(f"smoke OK: SFL on {expected_backend} in float32 {amp}, {len(trained)} training calls")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
