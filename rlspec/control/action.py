"""The action space shared by the environment, every controller and serving.

`Discrete(k_max + 2)`: index 0..k_max is the draft length with the drafter resident;
index k_max + 1 means "drafter offloaded" (no speculation, its memory given to KV).
Leaving the offloaded state pays the reload cost, so the two k=0 forms differ.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Action:
    k: int  # draft tokens per request this step (0 = plain decoding)
    offload: bool = False  # True: move the drafter off the accelerator (implies k = 0)

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ValueError(f"Action.k must be >= 0, got {self.k}")
        if self.offload and self.k != 0:
            raise ValueError(f"Action.offload=True requires k=0, got k={self.k}")

    def index(self, k_max: int) -> int:
        if self.offload:
            return k_max + 1
        if self.k > k_max:
            raise ValueError(f"Action.k={self.k} exceeds k_max={k_max}")
        return self.k

    @staticmethod
    def from_index(index: int, k_max: int) -> Action:
        index = int(index)
        if not 0 <= index <= k_max + 1:
            raise ValueError(f"action index must be in [0, {k_max + 1}], got {index}")
        return OFFLOAD if index == k_max + 1 else Action(k=index)


OFFLOAD = Action(k=0, offload=True)
