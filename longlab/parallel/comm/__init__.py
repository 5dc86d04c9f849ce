"""Communication: the `Communicator` protocol, its two worlds (`SimGroup`: threads with an alpha-beta clock;
`TorchGroup`: torch.distributed), the recorded `Trace` of `Event`s, and differentiable wrappers (`ops`)."""
from .protocol import NO_TAG, Communicator, Tag
from .sim_group import SimGroup, SimWorld
from .torch_group import TorchGroup
from .trace import AlphaBeta, Event, Trace

__all__ = ["Communicator", "Tag", "NO_TAG", "SimGroup", "SimWorld", "TorchGroup", "AlphaBeta", "Event", "Trace"]
