"""Signal Filtering Layer and Spike Discretization Unit: real SpikingJelly IF dynamics."""
import pytest
import torch

from nvpt.errors import NVPTError
from nvpt.spiking import SignalFilteringLayer, SpikeDiscretizationUnit, backend, resolve_backend


def run_sfl(values, reset, threshold=1.0):
    sfl = SignalFilteringLayer(len(values), threshold, reset=reset)
    sfl.record = True
    currents = torch.tensor(values).reshape(-1, 1)  # [T, 1]
    spikes = sfl(currents)
    return spikes.flatten().tolist(), sfl.last_v_seq.flatten().tolist()


def test_if_soft_reset_by_hand():
    # v: 0.7 | 1.4 -> spike, v = 0.4 | 1.1 -> spike, v = 0.1 | 0.8
    spikes, v = run_sfl([0.7, 0.7, 0.7, 0.7], "soft")
    assert spikes == [0.0, 1.0, 1.0, 0.0]
    assert v == pytest.approx([0.7, 0.4, 0.1, 0.8], abs=1e-6)


def test_if_hard_reset_by_hand():
    # v: 0.7 | 1.4 -> spike, v = 0 | 0.7 | 1.4 -> spike, v = 0
    spikes, v = run_sfl([0.7, 0.7, 0.7, 0.7], "hard")
    assert spikes == [0.0, 1.0, 0.0, 1.0]
    assert v == pytest.approx([0.7, 0.0, 0.7, 0.0], abs=1e-6)


def test_if_integrates_varying_input_and_resets_between_calls():
    # a transient negative step delays but does not cancel the spike: 0.6 | 0.6-0.5=0.1... by hand:
    # v: 0.6 | 0.1 | 0.7 | 1.3 -> spike, soft: 0.3
    sfl = SignalFilteringLayer(4, 1.0, reset="soft")
    x = torch.tensor([0.6, -0.5, 0.6, 0.6]).reshape(4, 1)
    first = sfl(x).flatten().tolist()
    assert first == [0.0, 0.0, 0.0, 1.0]
    assert sfl(x).flatten().tolist() == first  # explicit reset: no state leaks between calls
    assert sfl.last_v_seq is None  # membrane potentials are kept only when recording


def test_sfl_filters_transient_noise():
    # A current of 0.75 fires at rate >= 1/2 over T=8; one-step thresholding of noisy current flips often.
    torch.manual_seed(0)
    n, steps, std = 20000, 8, 0.4
    currents = 0.75 + std * torch.randn(steps, n)
    sdu = SpikeDiscretizationUnit("rate")
    filtered = sdu(SignalFilteringLayer(steps, 1.0)(currents))
    direct = (currents[0] >= 0.5).float()  # a single noisy step thresholded at the same rate point
    assert filtered.mean() > 0.93
    assert direct.mean() < filtered.mean() - 0.15  # P(0.75 + 0.4 z >= 0.5) = 0.73


def test_sdu_rules_and_straight_through_gradient():
    spikes = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)
    rate = SpikeDiscretizationUnit("rate", 0.5)(spikes)  # rates 0.75, 0.25, 0.25
    assert rate.tolist() == [1.0, 0.0, 0.0]
    rate.sum().backward()
    assert torch.allclose(spikes.grad, torch.full_like(spikes, 0.25))  # d mean / d spike = 1/T
    assert SpikeDiscretizationUnit("last")(spikes).tolist() == [1.0, 0.0, 0.0]
    half = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    assert SpikeDiscretizationUnit("rate", 0.5)(half).item() == 1.0  # rate exactly 1/2 counts


def test_backend_choice(monkeypatch):
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    assert resolve_backend("torch", torch.device("cpu")) == "torch"
    with pytest.raises(NVPTError, match="spike.backend=cupy requested but the prompts are not on CUDA"):
        resolve_backend("cupy", torch.device("cpu"))
    monkeypatch.setattr(backend, "cupy_available", lambda: True)
    assert resolve_backend("auto", torch.device("cuda")) == "cupy"
    monkeypatch.setattr(backend, "cupy_available", lambda: False)
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    with pytest.raises(NVPTError, match="cupy does not import"):
        resolve_backend("cupy", torch.device("cuda"))


def test_cupy_extra_matches_torchs_cuda():
    """`make gpu` installs the extra that cupy_extra names: the CuPy wheel of torch's CUDA major version."""
    assert backend.cupy_extra(True, "13.0")[0] == "gpu"
    assert backend.cupy_extra(True, "12.8")[0] == "gpu-cu12"
    assert backend.cupy_extra(False, "13.0")[0] is None  # a CUDA build of torch on a machine without a GPU
    assert backend.cupy_extra(True, None)[0] is None  # ROCm build: torch.version.cuda is None
    extra, why = backend.cupy_extra(True, "11.8")
    assert extra is None and "CUDA 11.8" in why and "torch backend" in why


def test_run_backend_and_device_names(monkeypatch):
    cpu = torch.device("cpu")
    assert backend.run_backend("spike_nvpt", "if", "auto", cpu) == "torch"
    assert backend.run_backend("spike_nvpt", "none", "auto", cpu) == "none"  # no IF neurons
    assert backend.run_backend("vpt_deep", "if", "cupy", cpu) == "none"
    monkeypatch.setattr(backend, "cupy_available", lambda: True)
    assert backend.run_backend("spike_nvpt", "if", "auto", torch.device("cuda", 0)) == "cupy"
    assert backend.describe_device(cpu) == "cpu"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"NVIDIA H200 #{index}")
    assert backend.describe_device(torch.device("cuda", 1)) == "cuda:1 NVIDIA H200 #1"


def test_spikingjelly_2x_adapter(monkeypatch):
    """SpikingJelly 2.x has no `backend` argument: the same code must still build and run."""
    from spikingjelly.activation_based.neuron import IFNode

    class IFNodeWithoutBackend(IFNode):
        def __init__(self, v_threshold=1.0, v_reset=0.0, surrogate_function=None, detach_reset=False,
                     step_mode="s", store_v_seq=False):
            super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, "torch", store_v_seq)

    monkeypatch.setattr(backend, "_if_node_class", lambda: IFNodeWithoutBackend)
    monkeypatch.setattr(backend, "cupy_available", lambda: True)
    assert not backend.has_backend_argument()
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    with pytest.raises(NVPTError, match="no CuPy backend"):
        resolve_backend("cupy", torch.device("cuda"))
    spikes, _ = run_sfl([0.7, 0.7, 0.7, 0.7], "soft")
    assert spikes == [0.0, 1.0, 1.0, 0.0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run tools/gpu_check.sh on a GPU machine)")
def test_cupy_and_torch_backends_agree_on_spikes_and_gradients():
    pytest.importorskip("cupy")
    torch.manual_seed(0)
    currents = (0.6 + 0.5 * torch.randn(8, 4096, device="cuda")).requires_grad_()
    results = {}
    for name in ("torch", "cupy"):
        sfl = SignalFilteringLayer(8, 1.0, backend=name).cuda()
        x = currents.detach().clone().requires_grad_()
        spikes = sfl(x)
        (spikes * torch.linspace(-1, 1, 4096, device="cuda")).sum().backward()
        results[name] = (spikes.detach(), x.grad)
    assert torch.equal(results["torch"][0], results["cupy"][0])
    torch.testing.assert_close(results["torch"][1], results["cupy"][1], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run tools/gpu_check.sh on a GPU machine)")
def test_cupy_and_torch_backends_agree_from_a_given_membrane():
    """spike.persistent starts the IF neurons from a carried-over potential (node.v, flat [N])."""
    pytest.importorskip("cupy")
    torch.manual_seed(0)
    currents = 0.3 + 0.5 * torch.randn(4, 4096, device="cuda")
    v_init = torch.rand(4096, device="cuda")
    results = {}
    for name in ("torch", "cupy"):
        sfl = SignalFilteringLayer(4, 1.0, backend=name).cuda()
        x = currents.clone().requires_grad_()
        spikes, v = sfl(x, v_init=v_init, return_v=True)
        (spikes * torch.linspace(-1, 1, 4096, device="cuda")).sum().backward()
        results[name] = (spikes.detach(), v.detach(), x.grad)
        assert not torch.equal(spikes, sfl(currents))  # the start potential matters
    assert torch.equal(results["torch"][0], results["cupy"][0])
    torch.testing.assert_close(results["torch"][1], results["cupy"][1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results["torch"][2], results["cupy"][2], rtol=1e-4, atol=1e-5)


def test_sfl_smoke_tool_on_cpu(tmp_path):
    """tools/sfl_smoke.py is what tools/gpu_check.sh runs on CUDA: on CPU it must train and check too."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(root / "tools/sfl_smoke.py"), str(tmp_path / "run"),
                           str(tmp_path / "report.json"), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["backends"] == ["torch"] and report["devices"] == ["cpu"]
    assert report["input_dtypes"] == report["output_dtypes"] == ["torch.float32"]
    # 2 epochs of 10 steps train through the SFL; validation runs it without gradients
    assert report["sfl_training_calls"] == 20 and report["sfl_calls"] > report["sfl_training_calls"]
    assert len(report["history"]) == 2 and "smoke OK: SFL on torch" in proc.stdout
