"""Placement optimiser: which device hosts which contiguous range of a model's layers.

A pure function of (model profile, member snapshot, previous placement) that minimises
decode time per token within memory (DESIGN.md section 6).  Start at ``optimiser``.

=============  ==================================================================
``optimiser``  :func:`place`: credit, search, hysteresis, infeasibility (start here)
``request``    :class:`PlacementRequest` and its named defaults
``result``     :class:`Placement`, :class:`Stage`, :class:`StageMemory`
``profile``    :class:`ModelProfile` from a Hugging Face ``config.json``
``resources``  :class:`NodeResources`, :class:`DeviceResources`, :class:`Links`
``snapshot``   the resources and links from gossiped member records
``cost``       the cost model: slots, capacities, the layer split, the objective
``exact``      exact search up to 8 candidate devices (Held-Karp x closed-form split)
``heuristic``  seeded chains and local search above 8
``bounds``     a lower bound on any placement's cost, to judge the heuristic
``errors``     :class:`ProfileError`, :class:`PlacementInfeasible`
=============  ==================================================================
"""

from __future__ import annotations

from protocol.placement.errors import PlacementError, PlacementInfeasible, ProfileError
from protocol.placement.optimiser import place
from protocol.placement.profile import ModelProfile
from protocol.placement.request import PlacementRequest
from protocol.placement.resources import DeviceResources, Links, NodeResources
from protocol.placement.result import Placement, Stage, StageMemory
from protocol.placement.snapshot import links_from_records, nodes_from_records

__all__ = [
    "DeviceResources",
    "Links",
    "ModelProfile",
    "NodeResources",
    "Placement",
    "PlacementError",
    "PlacementInfeasible",
    "PlacementRequest",
    "ProfileError",
    "Stage",
    "StageMemory",
    "links_from_records",
    "nodes_from_records",
    "place",
]
