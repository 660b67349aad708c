"""Speed and memory of Spike-NVPT against VPT and the bare backbone, all in one process
(the logic behind tools/benchmark.py; docs/performance.md).

    result = run_benchmark(BenchmarkArgs(config="configs/dtd.yaml", batch_size=8), torch.device("cpu"))
    print(report(result))

Every model computes with one shared copy of the backbone weights and sees the same random
batch of [0,1] images (no dataset). Timed repeats of the models being compared are
interleaved, round r running them in an order rotated by r, so a shared machine's load hits
each alike; each reported time is a median over repeats, and each ratio the median of the
per-round ratios with its min/max and quartiles. Targets (PASS/FAIL, printed and in the JSON):
  deployed Spike-NVPT / VPT inference time                 <= 1.01
  deployed Spike-NVPT / bare backbone inference time       <= (tokens with prompts / without) * 1.03
  Spike-NVPT / VPT training step, at every --time-steps T  <= 1.05
  SFL time per step at the largest / smallest --sfl-batches <= 1.1 (the SFL never sees the batch)
Backbone weights do not matter for speed: they are random unless --weights keeps the config's.
"""
from __future__ import annotations

import ctypes
import gc
import math
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from nvpt.config import load_config
from nvpt.engine.loop import autocast_for
from nvpt.errors import NVPTError
from nvpt.models import build_model, create_backbone

DEFAULT_NUM_CLASSES = 10  # configs that take num_classes from the dataset: the head size barely matters
TARGETS = {"deployed_vs_vpt_inference": 1.01, "token_slack": 1.03, "train_step": 1.05, "sfl_batch_growth": 1.1}


@dataclass
class BenchmarkArgs:
    """What to measure (tools/benchmark.py's options, with its defaults)."""

    config: str
    overrides: list[str] = field(default_factory=list)
    batch_size: int | None = None  # None: data.batch_size
    repeats: int = 10
    warmup: int = 2
    sfl_batches: list[int] = field(default_factory=lambda: [1, 8, 64])
    time_steps: list[int] = field(default_factory=lambda: [4, 8])
    min_repeat_s: float = 0.1
    weights: bool = False  # True: the config's backbone weights; False: random init

    def check(self) -> None:
        """Every bad value, as one NVPTError, before any model is built."""
        if self.batch_size is not None and self.batch_size < 1:
            raise NVPTError("--batch-size must be >= 1")
        if self.repeats < 1:
            raise NVPTError("--repeats must be >= 1")
        if self.warmup < 0 or min(self.sfl_batches) < 1 or min(self.time_steps) < 1 or self.min_repeat_s < 0:
            raise NVPTError("--warmup and --min-repeat-s must be >= 0; --sfl-batches and --time-steps must be >= 1")
        if len(set(self.sfl_batches)) < 2:
            raise NVPTError("--sfl-batches needs at least two different batch sizes (e.g. --sfl-batches 1 8 64)")


# -- measurement primitives -------------------------------------------------------------
class Timer:
    """Seconds per call of fn over `iters` back-to-back calls: CUDA events on GPU, time.perf_counter
    on CPU. On CPU the process CPU time of the same calls is kept too (`last_cpu`): unlike wall
    time it excludes the time this process waits for a core that another job holds."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.last_cpu: float | None = None

    def __call__(self, fn, iters: int) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0 / iters
        cpu = time.process_time()
        begin = time.perf_counter()
        for _ in range(iters):
            fn()
        wall = time.perf_counter() - begin
        self.last_cpu = (time.process_time() - cpu) / iters
        return wall / iters


def _release_cpu_memory() -> None:
    """Hand freed heap pages back to the OS, so the next high-water mark starts from live memory."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the RSS delta may undercount
        pass


def _reset_rss_high_water_mark() -> bool:
    """Linux >= 4.0: writing 5 to clear_refs resets this process's peak RSS to its current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


def peak_memory(fn, device: torch.device) -> dict:
    """Memory one call of fn needs beyond what is already allocated (MiB)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_mb": round(peak / 2**20, 2), "delta_mb": round((peak - base) / 2**20, 2),
                "how": "torch.cuda.max_memory_allocated"}
    _release_cpu_memory()
    reset = _reset_rss_high_water_mark()
    base = _max_rss_bytes()
    fn()
    delta = _max_rss_bytes() - base
    how = "max RSS delta (getrusage), high-water mark reset first" if reset else \
        "max RSS delta (getrusage) without a high-water-mark reset: 0 unless this call set a new process peak"
    return {"peak_mb": None, "delta_mb": round(delta / 2**20, 2), "how": how}


def spread(values: list[float]) -> dict:
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "q1": q[0], "q3": q[2]}


class Series:
    """Per-repeat seconds of several named measurements: wall (the reported clock) and CPU time."""

    def __init__(self, names, timer: Timer):
        self.timer = timer
        self.wall: dict = {name: [] for name in names}
        self.cpu: dict | None = None if timer.cuda else {name: [] for name in names}

    def measure(self, name, fn, iters: int) -> None:
        self.wall[name].append(self.timer(fn, iters))
        if self.cpu is not None:
            self.cpu[name].append(self.timer.last_cpu)

    def ratio(self, num, den) -> dict:
        """Median, min/max and quartiles of the per-round ratios num/den (wall), plus the CPU-time median."""
        out = spread([a / b for a, b in zip(self.wall[num], self.wall[den])])
        if self.cpu is not None:
            out["cpu_time_median"] = statistics.median(a / b for a, b in zip(self.cpu[num], self.cpu[den]))
        return out

    def summary(self, name, batch: int | None = None) -> dict:
        s = spread(self.wall[name])
        out = {"images_per_s": batch / s["median"]} if batch else {}
        out["time_ms"] = {k: v * 1000 for k, v in s.items()}
        out["cpu_time_ms"] = statistics.median(self.cpu[name]) * 1000 if self.cpu is not None else None
        return out


def interleaved(fns: dict, repeats: int, warmup: int, timer: Timer, min_repeat_s: float) -> tuple[Series, int]:
    """Time each fn over `repeats` rounds, round r running them in an order rotated by r.

    Warm-up runs first (also interleaved); then one call of each sets how many back-to-back
    calls a repeat makes (the same for every fn of the group, at least min_repeat_s each).
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    single = [timer(fns[name], 1) for name in names]
    iters = max(1, math.ceil(min_repeat_s / max(statistics.median(single), 1e-9)))
    series = Series(names, timer)
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            series.measure(name, fns[name], iters)
    return series, iters


# -- models and steps -------------------------------------------------------------------
def _weights_overrides(weights: bool) -> list[str]:
    """Random initialisation unless `weights`: speed does not depend on the weights' values."""
    return [] if weights else ["model.pretrained=false", "model.pretrained_file=null"]


def load_cfg(config: str, overrides: list[str], weights: bool, extra: list[str]):
    cfg = load_config(config, _weights_overrides(weights) + list(overrides) + extra)
    if cfg.model.num_classes is None:
        cfg.model["num_classes"] = DEFAULT_NUM_CLASSES
    return cfg


def share_frozen_weights(target: torch.nn.Module, source: torch.nn.Module) -> None:
    """Point target's backbone at source's weight tensors, so every model computes with the very same
    memory (where a copy of the weights sits can change its speed by about as much as the 1 % the
    first target allows); the classifier, which trains, keeps a copy of its own."""
    state = source.state_dict(keep_vars=True)
    head = {id(p) for p in source.get_classifier().parameters()}
    head_keys = {k for k, v in state.items() if id(v) in head}
    frozen = {k: v for k, v in state.items() if k not in head_keys}
    missing, unexpected = target.load_state_dict(frozen, strict=False, assign=True)
    if unexpected or set(missing) != head_keys:
        raise NVPTError(f"backbones differ: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    target.get_classifier().load_state_dict(source.get_classifier().state_dict())


def build_models(args, device: torch.device) -> dict:
    """bare backbone, VPT, Spike-NVPT (eval: SFL per forward), deployed Spike-NVPT, Spike-NVPT per T.

    All of them share one set of backbone weights. The bare backbone is a separate timm model
    without prompt hooks, so its time holds nothing of the prompting code."""
    spike_cfg = load_cfg(args.config, args.overrides, args.weights, ["prompt.method=spike_nvpt"])
    vpt_method = "vpt_deep" if spike_cfg.prompt.deep else "vpt_shallow"  # the same [L, P, D] prompt shape
    vpt_cfg = load_cfg(args.config, args.overrides, args.weights, [f"prompt.method={vpt_method}"])
    torch.manual_seed(spike_cfg.seed)
    spike = build_model(spike_cfg).to(device)
    if not hasattr(spike.backbone, "blocks"):  # the targets and the blocks-only diagnostic count ViT tokens
        raise NVPTError(f"the benchmark measures ViT backbones; '{spike_cfg.model.name}' is a "
                        f"{type(spike.backbone).__name__} (pass a vit_* config)")
    vpt = build_model(vpt_cfg).to(device)
    if tuple(vpt.prompts.shape) != tuple(spike.prompts.shape):
        raise NVPTError(f"prompt shapes differ: {vpt_method} {tuple(vpt.prompts.shape)} vs spike_nvpt {tuple(spike.prompts.shape)}")
    bare = create_backbone(spike_cfg).to(device).eval()
    deployed = build_model(spike_cfg).to(device)
    deployed.load_state_dict(spike.state_dict())
    deployed.deploy()
    per_t = {}
    for steps in args.time_steps:
        cfg_t = load_cfg(args.config, args.overrides, args.weights, ["prompt.method=spike_nvpt", f"spike.time_steps={steps}"])
        per_t[steps] = build_model(cfg_t).to(device)
        per_t[steps].load_state_dict(spike.state_dict())
    for backbone in [vpt.backbone, bare, deployed.backbone] + [model.backbone for model in per_t.values()]:
        share_frozen_weights(backbone, spike.backbone)
    return {"cfg": spike_cfg, "vpt_method": vpt_method, "bare": bare, "vpt": vpt, "spike": spike,
            "deployed": deployed, "per_t": per_t}


def inference_fn(module, images, amp):
    def run():
        with torch.no_grad(), amp():
            module(images)
    return run


class TrainStep:
    """Forward + backward + SGD step on the trainable parameters (prompts and head)."""

    def __init__(self, model, cfg, images, labels, amp):
        self.model, self.images, self.labels, self.amp = model.train(), images, labels, amp
        self.rate_penalty = cfg.spike.rate_penalty if cfg.prompt.method == "spike_nvpt" else 0.0
        params = [p for p in model.parameters() if p.requires_grad]
        # a small lr: random labels must not drive the weights to inf/NaN (which changes the speed)
        self.optimizer = torch.optim.SGD(params, lr=1e-4, momentum=cfg.train.momentum)

    def __call__(self):
        with self.amp():
            loss = F.cross_entropy(self.model(self.images).float(), self.labels)
        aux = self.model.aux_loss() if self.rate_penalty > 0 else None
        total = loss + self.rate_penalty * aux if aux is not None else loss
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()


class SFLProbe:
    """model.prompts() in train mode + backward of its output [L, P, D], fed the upstream gradient
    that the model's last real training step produced (captured by a hook on the prompt source)."""

    def __init__(self, model):
        self.model = model
        self.grad: torch.Tensor | None = None
        model.prompts.register_forward_hook(self._capture)

    def _capture(self, module, args, output):
        if output.requires_grad and torch.is_grad_enabled():
            output.register_hook(self._store)

    def _store(self, grad):
        self.grad = grad.detach().clone()

    def __call__(self):
        self.model.prompts().backward(self.grad)


# -- the benchmark ----------------------------------------------------------------------
def check(name: str, ratio: dict, target: float, what: str) -> dict:
    ok = math.isfinite(ratio["median"]) and ratio["median"] <= target  # the wall clock decides
    return {"name": name, "what": what, "ratio": ratio["median"], "spread": ratio, "target": target, "pass": ok}


def run_benchmark(args, device: torch.device, log=print) -> dict:
    built = build_models(args, device)
    cfg, vpt, spike, deployed = built["cfg"], built["vpt"], built["spike"], built["deployed"]
    vpt_name = built["vpt_method"]
    bb = built["bare"]
    batch = args.batch_size or cfg.data.batch_size
    img, chans = bb.patch_embed.img_size, bb.patch_embed.proj.in_channels
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch, chans, *img, generator=gen).to(device)
    labels = torch.randint(0, cfg.model.num_classes, (batch,), generator=gen).to(device)
    amp_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.train.amp_dtype]
    use_amp = cfg.train.amp and device.type == "cuda"

    def amp():
        return autocast_for(device, use_amp, amp_dtype)

    timer = Timer(device)
    layers, length, dim = spike.prompts.shape
    tokens_plain = bb.num_prefix_tokens + bb.patch_embed.num_patches
    tokens_prompted = tokens_plain + length
    result = {
        "config": args.config, "overrides": list(args.overrides), "weights": "config" if args.weights else "random",
        "device": str(device), "device_name": device_name(device),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_avg_start": list(os.getloadavg()), "amp": str(amp_dtype).replace("torch.", "") if use_amp else None,
        "batch_size": batch, "repeats": args.repeats, "warmup": args.warmup, "min_repeat_s": args.min_repeat_s,
        "model": {"name": cfg.model.name, "img_size": list(img), "embed_dim": dim, "depth": len(bb.blocks),
                  "prompt_layers": layers, "prompt_length": length, "num_classes": cfg.model.num_classes,
                  "tokens_without_prompts": tokens_plain, "tokens_with_prompts": tokens_prompted,
                  "spike_time_steps": cfg.spike.time_steps, "vpt_method": vpt_name},
    }

    # inference: bare timm backbone (no hooks), VPT, SFL per forward, deployed
    for model in (vpt, spike, deployed):
        model.eval()
    infer = {"backbone": inference_fn(bb, images, amp), vpt_name: inference_fn(vpt, images, amp),
             "spike_nvpt_eval": inference_fn(spike, images, amp), "spike_nvpt_deployed": inference_fn(deployed, images, amp)}
    # diagnostic: the backbone's blocks alone on N and N + P tokens give the cost of the longer
    # sequence itself (attention grows quadratically), so deployed/backbone over this ratio is the hooks' overhead
    infer["blocks_tokens_plain"] = inference_fn(bb.blocks, torch.randn(batch, tokens_plain, dim, generator=gen).to(device), amp)
    infer["blocks_tokens_prompted"] = inference_fn(bb.blocks, torch.randn(batch, tokens_prompted, dim, generator=gen).to(device), amp)
    log(f"inference: {', '.join(infer)} (batch {batch}, {args.warmup} warm-up, {args.repeats} repeats)")
    for fn in infer.values():  # lazy initialisation stays out of the memory probe
        fn()
    memory = {name: peak_memory(fn, device) for name, fn in infer.items()}
    times, iters = interleaved(infer, args.repeats, args.warmup, timer, args.min_repeat_s)
    result["inference"] = {name: {**times.summary(name, batch), "memory": memory[name]} for name in infer}
    result["inference_iters_per_repeat"] = iters
    checks = [
        check("deployed_vs_vpt_inference", times.ratio("spike_nvpt_deployed", vpt_name),
              TARGETS["deployed_vs_vpt_inference"], f"deployed Spike-NVPT / {vpt_name} inference time"),
        check("deployed_vs_backbone_inference", times.ratio("spike_nvpt_deployed", "backbone"),
              tokens_prompted / tokens_plain * TARGETS["token_slack"],
              f"deployed Spike-NVPT / bare backbone inference time (tokens {tokens_prompted}/{tokens_plain} x {TARGETS['token_slack']})"),
    ]
    sequence = times.ratio("blocks_tokens_prompted", "blocks_tokens_plain")
    result["inference_ratios"] = {
        "spike_nvpt_eval_vs_deployed": times.ratio("spike_nvpt_eval", "spike_nvpt_deployed"),
        "blocks_prompted_vs_plain_tokens": sequence,
        "deployed_vs_backbone_over_sequence_cost": checks[1]["ratio"] / sequence["median"],
    }
    del infer, times

    # training steps: VPT and Spike-NVPT at every T, interleaved in one group
    train = {vpt_name: TrainStep(vpt, cfg, images, labels, amp)}
    for steps, model in built["per_t"].items():
        train[f"spike_nvpt_T{steps}"] = TrainStep(model, cfg, images, labels, amp)
    log(f"training steps: {', '.join(train)}")
    for step in train.values():  # optimizer state exists before the memory probe
        step()
    memory = {name: peak_memory(step, device) for name, step in train.items()}
    times, iters = interleaved(train, args.repeats, args.warmup, timer, args.min_repeat_s)
    result["training"] = {name: {**times.summary(name, batch), "memory": memory[name]} for name in train}
    result["training_iters_per_repeat"] = iters
    for steps in built["per_t"]:
        checks.append(check(f"train_step_T{steps}", times.ratio(f"spike_nvpt_T{steps}", vpt_name),
                            TARGETS["train_step"], f"Spike-NVPT (T={steps}) / {vpt_name} training step time"))
    del train, times

    # SFL time per training step while the batch varies (it must not grow: the SFL never sees the batch)
    sfl_batches = sorted(set(args.sfl_batches))
    gen = torch.Generator().manual_seed(1)
    spike.train()
    probe = SFLProbe(spike)
    steps = {}
    for b in sfl_batches:
        imgs = torch.rand(b, chans, *img, generator=gen).to(device)
        labs = torch.randint(0, cfg.model.num_classes, (b,), generator=gen).to(device)
        steps[b] = TrainStep(spike, cfg, imgs, labs, amp)
    log(f"SFL per training step at batch sizes {sfl_batches} (T={cfg.spike.time_steps}, prompts {layers}x{length}x{dim})")
    for _ in range(max(args.warmup, 1)):
        for b in sfl_batches:
            steps[b]()
            probe()
    sfl_iters = max(1, math.ceil(args.min_repeat_s / max(timer(probe, 1), 1e-9)))
    sfl = Series([f"sfl@{b}" for b in sfl_batches] + [f"step@{b}" for b in sfl_batches], timer)
    for r in range(args.repeats):
        shift = r % len(sfl_batches)
        for b in sfl_batches[shift:] + sfl_batches[:shift]:
            sfl.measure(f"step@{b}", steps[b], 1)  # a real step at batch b sets the gradient, then the SFL alone
            sfl.measure(f"sfl@{b}", probe, sfl_iters)
    result["sfl"] = {
        "time_steps": cfg.spike.time_steps, "batches": sfl_batches, "iters_per_repeat": sfl_iters,
        "sfl": {str(b): sfl.summary(f"sfl@{b}") for b in sfl_batches},
        "train_step": {str(b): sfl.summary(f"step@{b}", b) for b in sfl_batches},
        "share_of_step": {str(b): statistics.median(sfl.wall[f"sfl@{b}"]) / statistics.median(sfl.wall[f"step@{b}"])
                          for b in sfl_batches},
    }
    lo, hi = sfl_batches[0], sfl_batches[-1]
    checks.append(check("sfl_batch_growth", sfl.ratio(f"sfl@{hi}", f"sfl@{lo}"),
                        TARGETS["sfl_batch_growth"], f"SFL time per step at batch {hi} / at batch {lo}"))
    result["checks"] = checks
    result["all_pass"] = all(c["pass"] for c in checks)
    result["load_avg_end"] = list(os.getloadavg())
    return result


def _cpu(value) -> str:
    return f"{value:9.2f}" if value is not None else f"{'-':>9s}"


def report(result: dict) -> str:
    lines = [f"device {result['device']} ({result['device_name']}), torch {result['torch']}, {result['threads']} thread(s), "
             f"batch {result['batch_size']}, {result['warmup']} warm-up + {result['repeats']} interleaved repeats, "
             f"amp {result['amp']}, load avg {result['load_avg_start'][0]:.2f} -> {result['load_avg_end'][0]:.2f}"]
    m = result["model"]
    lines.append(f"model {m['name']} {m['img_size'][0]}px dim {m['embed_dim']} depth {m['depth']}, prompts "
                 f"{m['prompt_layers']}x{m['prompt_length']}x{m['embed_dim']}, tokens {m['tokens_with_prompts']} "
                 f"(without prompts {m['tokens_without_prompts']})")
    header = f"{'images/s':>10s} {'median ms':>10s} {'min ms':>9s} {'max ms':>9s} {'cpu ms':>9s} {'mem MiB':>9s}"
    for section in ("inference", "training"):
        lines.append(f"{section + ' (medians)':28s} {header}")
        for name, row in result[section].items():
            t = row["time_ms"]
            lines.append(f"  {name:26s} {row['images_per_s']:10.1f} {t['median']:10.2f} {t['min']:9.2f} {t['max']:9.2f} "
                         f"{_cpu(row['cpu_time_ms'])} {row['memory']['delta_mb']:9.1f}")
    s = result["sfl"]
    lines.append(f"SFL per training step (T={s['time_steps']}): batch, SFL median ms (min..max), cpu ms, "
                 "full step median ms, SFL share of the step")
    for b in map(str, s["batches"]):
        t, st = s["sfl"][b]["time_ms"], s["train_step"][b]["time_ms"]
        lines.append(f"  {b:>5s} {t['median']:9.3f} ({t['min']:.3f}..{t['max']:.3f}) {_cpu(s['sfl'][b]['cpu_time_ms'])} "
                     f"{st['median']:10.2f} {100 * s['share_of_step'][b]:6.2f}%")
    r = result["inference_ratios"]
    lines.append(f"diagnostics: SFL-per-forward / deployed inference {r['spike_nvpt_eval_vs_deployed']['median']:.3f}; "
                 f"blocks on {m['tokens_with_prompts']} / {m['tokens_without_prompts']} tokens "
                 f"{r['blocks_prompted_vs_plain_tokens']['median']:.3f} (the longer sequence's own cost), so the prompt "
                 f"hooks cost x{r['deployed_vs_backbone_over_sequence_cost']:.3f}")
    lines.append("checks: ratio = median of per-round wall-clock ratios [min..max, IQR q1..q3] (CPU-time ratio) vs target")
    for c in result["checks"]:
        sp = c["spread"]
        cpu = f" (cpu {sp['cpu_time_median']:.3f})" if "cpu_time_median" in sp else ""
        lines.append(f"  {'PASS' if c['pass'] else 'FAIL'} {c['what']}: {c['ratio']:.3f} "
                     f"[{sp['min']:.3f}..{sp['max']:.3f}, IQR {sp['q1']:.3f}..{sp['q3']:.3f}]{cpu} <= {c['target']:.3f}")
    lines.append("all targets met" if result["all_pass"] else "some targets missed")
    return "\n".join(lines)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0]}, {len(names)} cores" if names else platform.machine()


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise NVPTError("--device cuda but CUDA is not available; use --device auto or cpu")
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def corruption_suite_benchmark(config: str, overrides: list[str], corruptions: list[str], weights: bool,
                               batch_size: int | None, device: torch.device) -> dict:
    """nvpt.robustness.speed.time_suite on the config's test set (preloaded), the model as configured (deployed):
    corrupting and classifying every batch as the final evaluation does. Target: <= 300 s for the demo's 800
    test images on 2 cores (docs/performance.md)."""
    from nvpt.data.cache import unit_float
    from nvpt.engine.distributed import DistInfo
    from nvpt.engine.loop import Normalize
    from nvpt.engine.run import make_loader, prepare_data
    from nvpt.robustness.corruptions import corruption_grid, resolve_table
    from nvpt.robustness.speed import suite_report, time_suite

    cfg = load_config(config, _weights_overrides(weights) + list(overrides))
    sets = corruption_grid(corruptions or ["all"], cfg.eval.severities, [])
    torch.manual_seed(cfg.seed)
    bundle, img_size = prepare_data(cfg)
    model = build_model(cfg).to(device).eval().deploy()
    loader = make_loader(bundle.test, batch_size or cfg.data.eval_batch_size, cfg, DistInfo(), False, device)
    batches = [(unit_float(images), ids) for images, _, ids in loader]
    result = time_suite(model, batches, Normalize(bundle.mean, bundle.std).to(device), device, sets,
                        resolve_table(cfg.eval.corruption_table, img_size), cfg.eval.seed)
    result.update(config=config, overrides=list(overrides), device_name=device_name(device),
                  load_avg=list(os.getloadavg()))
    result["report"] = suite_report(result)
    return result
