"""Spiking parts of Spike-NVPT: backend choice, Signal Filtering Layer, Spike Discretization Unit.

Nothing here is imported by a deployed model: `nvpt.models` imports this package lazily,
only when it builds a trainable spike_nvpt prompt.
"""
from nvpt.spiking.backend import make_if_node, resolve_backend
from nvpt.spiking.discretize import SpikeDiscretizationUnit
from nvpt.spiking.signal_filter import SignalFilteringLayer

__all__ = ["make_if_node", "resolve_backend", "SignalFilteringLayer", "SpikeDiscretizationUnit"]
