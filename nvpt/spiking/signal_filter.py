"""Signal Filtering Layer (SFL): integrate-and-fire neurons over T steps.

Each prompt element is one IF neuron. For t = 1..T it receives the current
I_t = U + noise_std * xi_t (xi_t fresh Gaussian noise while training, none in eval),
integrates it, fires when the membrane potential reaches v_threshold and resets
(soft: subtract the threshold; hard: back to 0). A transient fluctuation in one step
rarely changes the spike count, so the spike train follows the slow part of U.
"""
from __future__ import annotations

import torch
from torch import nn

from nvpt.spiking.backend import make_if_node, resolve_backend, set_node_backend


class SignalFilteringLayer(nn.Module):
    def __init__(self, time_steps: int, v_threshold: float, reset: str = "soft", surrogate: str = "atan",
                 surrogate_alpha: float = 2.0, backend: str = "auto"):
        super().__init__()
        self.time_steps = time_steps
        self.requested_backend = backend
        self.node = make_if_node(v_threshold, hard_reset=(reset == "hard"), surrogate_name=surrogate, alpha=surrogate_alpha)
        self._backend_device: torch.device | None = None
        self.backend = "torch"
        self.record = False  # keep the membrane potentials (plots): costs time, so off while training
        self.last_v_seq: torch.Tensor | None = None  # [T, *shape] membrane potential after each step's reset

    @property
    def record(self) -> bool:
        return self._record

    @record.setter
    def record(self, value: bool) -> None:
        self._record = bool(value)
        self.node.store_v_seq = self._record

    def _ensure_backend(self, device: torch.device) -> None:
        if self._backend_device != device:
            self.backend = resolve_backend(self.requested_backend, device)
            set_node_backend(self.node, self.backend)
            self._backend_device = device

    def forward(self, currents: torch.Tensor, v_init: torch.Tensor | None = None, return_v: bool = False):
        """currents [T, *shape] (float32 or float16) -> spikes [T, *shape] in {0, 1}.

        v_init [*shape]: membrane potential to start from (default 0). return_v=True also returns
        the membrane potential after the last step, [*shape] (spike.persistent carries it over).
        """
        self._ensure_backend(currents.device)
        self.node.reset()  # stateful neuron: start every prompt computation from v = 0 ...
        flat = currents.reshape(currents.shape[0], -1)  # [T, N]: the CuPy kernel wants [T, N]
        if v_init is not None:  # ... or from the given potential: SpikingJelly's own state, flat [N] (CuPy too)
            self.node.v = v_init.reshape(-1).to(flat.dtype).contiguous()
        spikes = self.node(flat.contiguous())
        v_seq = getattr(self.node, "v_seq", None) if self.record else None
        self.last_v_seq = v_seq.detach().reshape(currents.shape) if v_seq is not None else None
        v_final = self.node.v.reshape(currents.shape[1:]) if return_v else None
        self.node.reset()
        spikes = spikes.reshape(currents.shape)
        return (spikes, v_final) if return_v else spikes
