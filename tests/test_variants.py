"""Method variants of issue 12, each a spike.* key that is off by default: behaviour, gradients, resume, export."""
import math

import pytest
import torch

from conftest import tiny_cfg
from nvpt.engine.checkpoint import LAST, checkpoint_state, load_checkpoint, model_identity, read_checkpoint, save_checkpoint
from nvpt.engine.optim import WarmupCosine, build_optimizer
from nvpt.engine.restore import load_run
from nvpt.pipeline import run_training
from nvpt.errors import NVPTError
from nvpt.export import export_packed, load_packed, read_packed
from nvpt.models import build_model
from nvpt.models.binary_prompts import prompt_bits
from test_export import make_run, outputs

L, P, D = 3, 4, 48  # the tiny ViT's prompt shape (tests/conftest.py)


def spike_model(*overrides: str):
    torch.manual_seed(0)
    return build_model(tiny_cfg("prompt.method=spike_nvpt", *overrides))


def set_current(prompts, value) -> None:
    with torch.no_grad():
        prompts.current.copy_(torch.as_tensor(value, dtype=torch.float32).expand_as(prompts.current))


def binary_of(prompts) -> torch.Tensor:
    """b of the current eval-mode pass (no noise), from the SFL and SDU themselves."""
    was = prompts.training
    prompts.eval()
    with torch.no_grad():
        b = prompts.discretize(prompts.spike_train())
    prompts.train(was)
    return b


# -- defaults: today's behaviour -------------------------------------------------------
def test_defaults_add_no_parameter_buffer_or_optimizer_group():
    model = spike_model()
    assert set(checkpoint_state(model)) == {"prompts.current", "prompts.scale", "prompts.noise_step",
                                            "backbone.head.weight", "backbone.head.bias"}
    optimizer = build_optimizer(model, tiny_cfg().train, 64)
    assert len(optimizer.param_groups) == 2 and all("lr_scale" not in g for g in optimizer.param_groups)
    assert model.lr_scales() == {} and model.prompts.noise_factor() == 1.0  # constant: no run length needed


# -- 1. affine decoding: tokens = scale * b + shift ---------------------------------------
@pytest.mark.parametrize("center", [False, True])
def test_shift_decodes_scale_b_plus_shift_and_learns(center):
    model = spike_model("spike.shift=channel", f"spike.center={str(center).lower()}")
    prompts = model.prompts
    assert prompts.shift.shape == (L, 1, D) and not prompts.shift.any()  # init 0: starts as scale-only decoding
    with torch.no_grad():
        prompts.shift.copy_(torch.linspace(-0.3, 0.2, D).expand(L, 1, D))
    b = binary_of(prompts)
    assert 0 < b.mean() < 1
    levels = 2 * b - 1 if center else b
    assert torch.equal(model.prompt_tokens(), levels * prompts.scale + prompts.shift)
    assert torch.equal(model.deploy().prompts.tokens, levels * prompts.scale + prompts.shift)
    # it trains, and takes no weight decay (like a bias)
    prompts.train()
    weights = torch.randn(L, P, D, generator=torch.Generator().manual_seed(1))
    (prompts() * weights).sum().backward()
    torch.testing.assert_close(prompts.shift.grad, weights.sum(dim=1, keepdim=True))
    fresh = spike_model("spike.shift=channel")
    optimizer = build_optimizer(fresh, tiny_cfg().train, 64)
    no_decay = {id(p) for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(fresh.prompts.shift) in no_decay and id(fresh.prompts.current) not in no_decay


@pytest.mark.parametrize("overrides", [
    ("spike.shift=channel",),
    ("spike.shift=channel", "spike.center=true"),
    ("spike.shift=channel", "spike.scale=layer"),
    ("spike.shift=channel", "spike.scale=none", "prompt.deep=false"),
])
def test_export_with_shift_round_trips_exactly(tmp_path, overrides):
    cfg, reference = make_run(tmp_path / "run", "prompt.method=spike_nvpt", *overrides)  # shift moved off 0
    info = export_packed(tmp_path / "run", tmp_path / "packed.safetensors")
    tensors, meta, _ = read_packed(info.path)
    layers = meta["prompt_shape"][0]
    assert tensors["prompts/shift"].shape == (layers, 1, D) and tensors["prompts/shift"].dtype == torch.float32
    assert tensors["prompts/shift"].abs().min() > 0 and meta["mapping"].endswith("+ shift")
    packed = load_packed(info.path)
    assert torch.equal(packed.prompts.tokens, reference.prompts.tokens)
    assert torch.equal(outputs(packed), outputs(reference))
    sizes = info.sizes
    assert sizes["shift_bytes"] == layers * D * 4
    assert sizes["prompt_payload_bytes"] == sizes["bits_bytes"] + sizes["scale_bytes"] + sizes["shift_bytes"]
    assert sizes["prompt_bits"] == layers * P * D + 8 * (sizes["scale_bytes"] + sizes["shift_bytes"])
    assert sizes["prompt_bits"] == prompt_bits(cfg, (layers, P, D))


def test_deployed_checkpoint_with_shift_packs_when_it_factors_exactly(tmp_path):
    """A checkpoint saved after deploy() holds only tokens: scale and shift are recovered from them
    when that reproduces them exactly; else a clear error (training checkpoints keep the factors)."""
    _, reference = make_run(tmp_path / "run", "prompt.method=spike_nvpt", "spike.shift=channel", deploy=True)
    packed = load_packed(export_packed(tmp_path / "run").path)
    assert torch.equal(packed.prompts.tokens, reference.prompts.tokens)
    make_run(tmp_path / "layer", "prompt.method=spike_nvpt", "spike.shift=channel", "spike.scale=layer", deploy=True)
    with pytest.raises(NVPTError, match=r"not exactly scale \* b \+ shift .*a checkpoint saved before deploy\(\)"):
        export_packed(tmp_path / "layer")


def test_packed_file_without_its_shift_is_refused(tmp_path):
    make_run(tmp_path / "run", "prompt.method=spike_nvpt")  # spike.shift=none: no prompts/shift stored
    info = export_packed(tmp_path / "run")
    tensors, meta, cfg = read_packed(info.path)
    cfg.spike["shift"] = "channel"
    from nvpt.config import dump_config
    from nvpt.export import _serialise, _sha256

    meta.update(config=dump_config(cfg), prompt_shape=str(meta["prompt_shape"]), payload_sha256=_sha256(tensors))
    (tmp_path / "edited.safetensors").write_bytes(_serialise(tensors, meta, meta.pop("sizes")))
    with pytest.raises(NVPTError, match=r"prompts/shift must be \[3, 1, 48\] for spike.shift=channel"):
        load_packed(tmp_path / "edited.safetensors")


# -- 2. storage in bits -----------------------------------------------------------------
@pytest.mark.parametrize("overrides,expected", [
    (("prompt.method=spike_nvpt",), L * P * D + 32 * L * D),
    (("prompt.method=spike_nvpt", "spike.shift=channel"), L * P * D + 32 * 2 * L * D),
    (("prompt.method=spike_nvpt", "spike.scale=layer"), L * P * D + 32 * L),
    (("prompt.method=spike_nvpt", "spike.scale=none"), L * P * D),
    (("prompt.method=vpt_deep",), 32 * L * P * D),
    (("prompt.method=linear",), 0),
])
def test_prompt_bits(overrides, expected):
    cfg = tiny_cfg(*overrides)
    model = build_model(cfg)
    assert prompt_bits(cfg, model.prompt_tokens().shape) == expected
    if cfg.prompt.method == "spike_nvpt":  # the deployed model (static tokens) reports the same
        assert prompt_bits(cfg, model.deploy().prompt_tokens().shape) == expected


# -- 3. training noise schedule -----------------------------------------------------------
def noisy_train_spikes(prompts) -> torch.Tensor:
    """The spikes of the next training step (its noise), without advancing the step."""
    prompts.train()
    with torch.no_grad():
        return prompts.spike_train()


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_annealed_noise_starts_as_constant_and_ends_at_zero(schedule):
    total = 5
    constant = spike_model("spike.noise_std=0.5").prompts
    annealed = spike_model("spike.noise_std=0.5", f"spike.noise_schedule={schedule}").prompts
    set_current(constant, 0.5)  # on the rate boundary of T = 2: the noise decides most bits
    set_current(annealed, 0.5)
    annealed.train()
    with pytest.raises(NVPTError, match="needs the run's length: call model.set_training_steps"):
        annealed()
    annealed.set_training_steps(total)
    assert [annealed.noise_factor(k) for k in (0, 2, 4)] == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    assert 0.5 < annealed.noise_factor(1) < 1.0 and annealed.noise_factor(9) == 0.0
    assert torch.equal(noisy_train_spikes(annealed), noisy_train_spikes(constant))  # step 0: same noise
    clean = binary_of(annealed)
    for _ in range(total - 1):  # advance both to the last step
        annealed(), constant()
    assert int(annealed.noise_step) == total - 1
    last = noisy_train_spikes(annealed)
    assert torch.equal(last, annealed.spike_train(add_noise=False))  # no noise at the last step
    assert not torch.equal(noisy_train_spikes(constant), last)
    assert torch.equal(annealed.discretize(last), clean)


def test_noise_schedule_resumes_exactly_through_a_checkpoint(tmp_path):
    cfg = tiny_cfg("prompt.method=spike_nvpt", "spike.noise_std=0.5", "spike.noise_schedule=cosine")
    torch.manual_seed(0)
    model = build_model(cfg)
    model.set_training_steps(8)
    model.prompts.train()
    for _ in range(3):
        model.prompts()
    save_checkpoint(tmp_path / "ckpt.safetensors", model, model_identity(model, cfg))
    expected = [model.prompts().detach() for _ in range(3)]  # steps 3, 4, 5
    torch.manual_seed(1)  # another init: everything that matters must come from the checkpoint
    resumed = build_model(cfg)
    resumed.set_training_steps(8)  # as run_training does at every start
    load_checkpoint(tmp_path / "ckpt.safetensors", resumed, model_identity(resumed, cfg))
    assert int(resumed.prompts.noise_step) == 3 and resumed.prompts.noise_factor() == model.prompts.noise_factor(3)
    resumed.prompts.train()
    assert all(torch.equal(resumed.prompts(), e) for e in expected)


# -- 4. integration across optimisation steps ----------------------------------------------
@pytest.mark.parametrize("reset,membrane_after_2", [("soft", 0.2), ("hard", 0.0)])
def test_persistent_membrane_fires_on_the_second_iteration(reset, membrane_after_2):
    # T = 2, U = 0.3, threshold 1: iteration 1 integrates 0.3, 0.6 (no spike); iteration 2 goes on
    # 0.9, 1.2 -> one spike (rate 1/2: b = 1), then the reset. Without persistence b stays 0.
    model = spike_model("spike.persistent=true", "spike.noise_std=0", f"spike.reset={reset}")
    plain = spike_model("spike.noise_std=0").prompts
    prompts = model.prompts
    set_current(prompts, 0.3)
    set_current(plain, 0.3)
    assert not model.prompt_tokens().any()  # before training: the noise-free pass from v = 0
    prompts.train(), plain.train()
    first, plain_first = prompts(), plain()
    assert not first.any() and not plain_first.any()
    torch.testing.assert_close(prompts.membrane, torch.full((L, P, D), 0.6))
    second, plain_second = prompts(), plain()
    assert torch.equal(second, prompts.scale.expand(L, P, D)) and not plain_second.any()
    torch.testing.assert_close(prompts.membrane, torch.full((L, P, D), membrane_after_2), atol=1e-6, rtol=0)
    assert torch.equal(prompts.last_bits, torch.ones(L, P, D))
    # eval and deploy use the bits training last used (a fresh pass from v = 0 would give 0)
    membrane = prompts.membrane.clone()
    assert torch.equal(model.prompt_tokens(), second.detach())
    assert torch.equal(prompts.membrane, membrane)  # eval leaves the membrane alone
    assert torch.equal(model.deploy().prompts.tokens, second.detach())


def test_persistent_membrane_survives_a_checkpoint_and_trains(tmp_path):
    cfg = tiny_cfg("prompt.method=spike_nvpt", "spike.persistent=true", "spike.noise_std=0.3")
    torch.manual_seed(0)
    model = build_model(cfg)
    model.prompts.train()
    (model.prompts() * torch.randn(L, P, D)).sum().backward()
    assert model.prompts.current.grad.abs().sum() > 0  # the surrogate gradient of this iteration's steps
    assert not model.prompts.membrane.requires_grad  # detached between iterations
    save_checkpoint(tmp_path / "ckpt.safetensors", model, model_identity(model, cfg))
    saved = {name: value.clone() for name, value in checkpoint_state(model).items()}
    assert {"prompts.membrane", "prompts.last_bits"} <= set(saved)
    expected = [model.prompts().detach() for _ in range(3)]
    torch.manual_seed(1)
    resumed = build_model(cfg)
    load_checkpoint(tmp_path / "ckpt.safetensors", resumed, model_identity(resumed, cfg))
    assert torch.equal(resumed.prompts.membrane, saved["prompts.membrane"])
    resumed.prompts.train()
    assert all(torch.equal(resumed.prompts(), e) for e in expected)
    assert torch.equal(resumed.prompts.membrane, model.prompts.membrane)


def test_sfl_starts_from_a_given_membrane_and_returns_the_final_one():
    from nvpt.spiking import SignalFilteringLayer

    sfl = SignalFilteringLayer(2, 1.0, reset="soft")
    currents = torch.full((2, 2, 3), 0.3)
    for training in (True, False):  # SpikingJelly's training loop and its scripted eval path
        sfl.train(training)
        spikes, v = sfl(currents, v_init=torch.full((2, 3), 0.6), return_v=True)  # 0.9, 1.2 -> spike, 0.2
        assert spikes[:, 0, 0].tolist() == [0.0, 1.0] and v.shape == (2, 3)
        torch.testing.assert_close(v, torch.full((2, 3), 0.2))
        assert not sfl(currents).any()  # the next call starts from 0 again


# -- 5. gradient path ------------------------------------------------------------------
def test_ste_passes_the_binary_prompts_gradient_to_the_current():
    surrogate, ste = spike_model().prompts, spike_model("spike.gradient=ste").prompts
    weights = torch.randn(L, P, D, generator=torch.Generator().manual_seed(2))
    tokens = {}
    for name, prompts in (("surrogate", surrogate), ("ste", ste)):
        prompts.train()
        tokens[name] = prompts()
        (tokens[name] * weights).sum().backward()
    assert torch.equal(tokens["ste"], tokens["surrogate"])  # same forward, same noise
    expected = weights * ste.scale.detach()  # dL/db = dL/dtokens * scale
    assert torch.equal(ste.current.grad, expected)
    assert not torch.allclose(surrogate.current.grad, expected)
    assert torch.equal(ste.scale.grad, surrogate.scale.grad)  # only U's path changes


# -- 6. learning rate of U and the firing-rate target ---------------------------------------
def test_current_lr_scale_gets_its_own_group_through_warmup_and_cosine(tmp_path):
    cfg = tiny_cfg("prompt.method=spike_nvpt", "spike.current_lr_scale=0.25", "train.min_lr=0.001",
                   "train.optimizer=adamw")
    model = build_model(cfg)
    optimizer = build_optimizer(model, cfg.train, 64)
    groups = optimizer.param_groups
    assert len(groups) == 3 and groups[2]["params"] == [model.prompts.current] and groups[2]["lr_scale"] == 0.25
    assert groups[2]["weight_decay"] == groups[0]["weight_decay"] > 0  # U keeps its weight decay
    assert all(p is not model.prompts.current for g in groups[:2] for p in g["params"])
    scheduler = WarmupCosine(optimizer, total_iters=10, warmup_iters=3, min_lr=cfg.train.min_lr)
    seen = []
    for it in range(12):
        groups = optimizer.param_groups
        assert groups[2]["lr"] == pytest.approx(0.25 * groups[0]["lr"], rel=1e-12)
        assert groups[1]["lr"] == groups[0]["lr"]
        seen.append(groups[0]["lr"])
        if it == 4:  # a checkpoint round trip mid-schedule: the group, its scale and its lr come back
            model.prompts.current.sum().backward()
            optimizer.step()
            save_checkpoint(tmp_path / "last.safetensors", model, model_identity(model, cfg), optimizer, scheduler)
            model = build_model(cfg)
            optimizer = build_optimizer(model, cfg.train, 64)
            scheduler = WarmupCosine(optimizer, 10, 3, cfg.train.min_lr)
            load_checkpoint(tmp_path / "last.safetensors", model, model_identity(model, cfg), optimizer, scheduler)
            assert scheduler.iteration == 4 and optimizer.param_groups[2]["lr_scale"] == 0.25
            assert [g["lr"] for g in optimizer.param_groups] == [g["lr"] for g in groups]
            assert optimizer.param_groups[2]["params"] == [model.prompts.current]
            assert torch.equal(optimizer.state[model.prompts.current]["exp_avg"], torch.full((L, P, D), 0.1))
        scheduler.step()
    assert seen[0] < seen[2] and seen[-1] == pytest.approx(cfg.train.min_lr)  # warmup up, cosine down to the floor
    assert optimizer.param_groups[2]["lr"] == pytest.approx(0.25 * cfg.train.min_lr)


@pytest.mark.parametrize("variant", ["spike.gradient=ste", "spike.persistent=true", "spike.stochastic=true",
                                     "spike.noise_schedule=linear"])
def test_firing_rate_target_works_with_the_variants(variant):
    model = spike_model("spike.target_rate=0.1", "spike.rate_penalty=1.0", variant)
    model.set_training_steps(10)
    model.prompts.train()
    model.prompts()
    loss = model.aux_loss()
    assert loss is not None and loss.item() > 0
    loss.backward()
    grad = model.prompts.current.grad
    assert grad is not None and grad.sum() > 0  # rate above target: the penalty pushes U down everywhere it can
    if variant == "spike.gradient=ste":  # straight through: d rate / dU = 1 / N for every element
        rate = model.prompts.last_rate.item()
        torch.testing.assert_close(grad, torch.full_like(grad, 2 * (rate - 0.1) / grad.numel()))


# -- 7. stochastic binarisation (BinaryConnect) ------------------------------------------------
def test_stochastic_binarisation_samples_the_rate_in_training_only():
    model = spike_model("spike.stochastic=true", "spike.noise_std=0")
    prompts = model.prompts
    # U = 0.6, T = 2: one spike (rate 1/2) -> deterministic b = 1, Bernoulli(1/2) while training;
    # layer 0 at U = 0 (rate 0) and layer 1 at U = 1.5 (rate 1) stay fixed
    set_current(prompts, torch.tensor([0.0, 1.5, 0.6]).view(L, 1, 1))
    assert torch.equal(binary_of(prompts), torch.ones(L, P, D) - (torch.arange(L) == 0).float().view(L, 1, 1))
    prompts.train()
    draws = [(prompts() / prompts.scale).detach() for _ in range(3)]
    for b in draws:
        assert not b[0].any() and b[1].all()
        assert 0.35 < b[2].mean() < 0.65  # 192 fair coins
    assert not torch.equal(draws[0][2], draws[1][2])  # fresh draws every step ...
    again = spike_model("spike.stochastic=true", "spike.noise_std=0").prompts
    set_current(again, torch.tensor([0.0, 1.5, 0.6]).view(L, 1, 1))
    again.train()
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal((again() / again.scale).detach(), draws[0])  # ... a pure function of (seed, step)
    assert torch.equal(model.prompt_tokens() / prompts.scale, binary_of(prompts))  # eval: deterministic
    weights = torch.randn(L, P, D)
    (prompts() * weights).sum().backward()
    assert prompts.current.grad[2].abs().sum() > 0  # straight-through to the rate, as the deterministic rule


def test_variant_relations_are_checked():
    with pytest.raises(NVPTError, match="spike.persistent' needs the IF filter"):
        tiny_cfg("spike.persistent=true", "spike.filter=none")
    with pytest.raises(NVPTError, match="spike.stochastic' samples bits from the firing rate"):
        tiny_cfg("spike.stochastic=true", "spike.discretize=last")
    with pytest.raises(NVPTError, match="spike.current_lr_scale' must be > 0"):
        tiny_cfg("spike.current_lr_scale=0")


# -- all together, end to end ----------------------------------------------------------------
class _Interrupt(Exception):
    pass


def test_every_variant_at_once_trains_resumes_exactly_and_exports(tmp_path):
    """A real run with every option on; one copy is interrupted after epoch 0 and resumed: the
    checkpoints (membrane, noise step, optimizer groups) and results must equal the uninterrupted run's."""
    overrides = ["prompt.method=spike_nvpt", "data.name=textures", "data.train_per_class=4", "data.test_per_class=4",
                 "data.val_fraction=0.25", "data.crop_size=32", "data.num_workers=0", "data.batch_size=8",
                 "train.epochs=2", "train.warmup_epochs=1", "eval.gaussian_std=[0.1]", "model.num_classes=null",
                 f"output_dir={tmp_path}", "seed=7", "spike.shift=channel", "spike.noise_schedule=cosine",
                 "spike.persistent=true", "spike.gradient=ste", "spike.current_lr_scale=3", "spike.stochastic=true",
                 "spike.target_rate=0.3", "spike.rate_penalty=0.1"]
    whole = run_training(tiny_cfg(*overrides, "run_name=whole"), log=lambda m: None, show_progress=False)

    def stop_after_epoch_0(message):
        if message.startswith('{"epoch": 0'):  # logged after epoch 0's checkpoint was written
            raise _Interrupt

    with pytest.raises(_Interrupt):
        run_training(tiny_cfg(*overrides, "run_name=cut"), log=stop_after_epoch_0, show_progress=False)
    resumed = run_training(tiny_cfg(*overrides, f"train.resume={tmp_path / 'cut'}"), log=lambda m: None,
                           show_progress=False)
    a, meta_a = read_checkpoint(whole.run_dir / LAST)
    b, meta_b = read_checkpoint(resumed.run_dir / LAST)
    assert {"model/prompts.membrane", "model/prompts.shift", "optim/2/momentum_buffer"} <= set(a) and set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a) and meta_a["param_groups"] == meta_b["param_groups"]
    # one noise step per training iteration, and the schedule's total is the run's iteration count
    assert int(a["model/prompts.noise_step"]) == meta_a["scheduler"]["iteration"] == meta_a["scheduler"]["total"] > 2
    drop = lambda s: {k: v for k, v in s.items() if k != "eval_time_s"}  # noqa: E731
    assert drop(whole.summary) == drop(resumed.summary)
    assert whole.summary["prompt_bits"] == L * P * D + 32 * 2 * L * D
    packed = load_packed(export_packed(whole.run_dir).path)
    assert torch.equal(packed.prompts.tokens, load_run(whole.run_dir).model.deploy().prompts.tokens)
