"""The Backend protocol: one engine (simulated or live) driven one iteration at a time.

The environment, `rlspec eval` and calibration all run the same loop over it:
`start(requests)`, then repeatedly `set_action(...)` and `step()` until `finished`.
Time is virtual: it advances by the engine's step times (measured on a live engine),
never by wall time, so nothing outside the engine can flood its queue.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from rlspec.control.action import Action
from rlspec.engines.snapshot import RequestRecord, Snapshot
from rlspec.workload.request import Request


class Backend(ABC):
    """An engine that runs one iteration per `step()` and reports a Snapshot."""

    k_max: int  # largest draft length the engine was built for
    copyable: bool = False  # deepcopy gives an independent engine to run ahead on (rlspec.oracle)

    @abstractmethod
    def start(self, requests: Sequence[Request]) -> Snapshot:
        """Begin an episode replaying `requests`; returns the initial (empty) snapshot."""

    @abstractmethod
    def set_action(self, action: Action) -> None:
        """Draft length and drafter placement from the next iteration on."""

    @abstractmethod
    def step(self) -> Snapshot:
        """Run one iteration; with nothing to run, idle until the next arrival."""

    @property
    @abstractmethod
    def finished(self) -> bool:
        """True once every request of the episode has completed."""

    @abstractmethod
    def records(self) -> list[RequestRecord]:
        """Per-request timelines of the episode so far, in request-id order."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release engine resources; safe to call twice."""
