"""Measured draft verdicts, replayed as the simulator's luck.

With greedy sampling, whether the draft at a request's output position matches the target's
token is a property of the text, not of the draft length: the drafter proposes from the
target's own prefix (an accepted draft is the target's token), so every k meets the same
verdict at the same position. (Batch numerics can flip a close greedy token, after which the
text itself differs: 1-5 of 120 Azure code requests between two serves, `bench/verdict_replay.py`.) The simulator draws that verdict from the acceptance model
(`Simulator._luck`, keyed by request and output position); a request set has its own order of
easy and hard stretches, which fresh draws do not reproduce, and a controller that tracks
acceptance answers that order. Replaying the verdicts a live engine revealed puts the request
set's own luck in the simulator; positions no run revealed keep their drawn luck.

vLLM reports each request's verify steps (`per_request_spec_decode_metrics="detailed"`: drafts
proposed and accepted per step, steps without drafts left out). At static k >= 1 every decode
step verifies drafts, so the steps tile the output: the first verifies the drafts proposed
after the prefill sampled token 0, and a step at `g` tokens generated that accepts `a` of `d`
reveals positions g..g+a-1 accepted and g+a rejected (if a < d), then moves to g + a + 1.
A request whose steps do not tile its output (a preemption recomputes a step without drafts)
is left out rather than misaligned. A request's last step drafts past its output's end (vLLM
schedules whole drafts) and the target verifies those drafts too: their verdicts are kept, as
they move what the engine reports as acceptance (with outputs of a few tokens, a large share).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlspec.workload.request import Request

Steps = tuple[Sequence[int], Sequence[int]]  # (drafted per verify step, accepted per verify step)


@dataclass(frozen=True)
class DraftVerdicts:
    """Verdicts by request id and output position, for one request set."""

    shapes: tuple[tuple[int, int], ...]  # (prompt_len, output_len) of request id 0..n-1
    accepted: tuple[tuple[int, ...], ...]  # per request: output positions whose draft matched
    rejected: tuple[tuple[int, ...], ...]  # per request: output positions whose draft did not

    def __post_init__(self) -> None:
        n = len(self.shapes)
        if len(self.accepted) != n or len(self.rejected) != n:
            raise ValueError(f"verdicts: {n} shapes but {len(self.accepted)} accepted and "
                             f"{len(self.rejected)} rejected lists; one of each per request")  # fmt: skip
        for rid, (acc, rej) in enumerate(zip(self.accepted, self.rejected, strict=True)):
            if set(acc) & set(rej):
                raise ValueError(f"verdicts: request {rid} has positions both accepted and rejected")
            if any(p < 1 for p in (*acc, *rej)):
                raise ValueError(f"verdicts: request {rid} has a position below 1 (drafts follow the "
                                 "first output token, which the prefill samples)")  # fmt: skip

    @classmethod
    def from_steps(cls, requests: Sequence[Request], steps: Mapping[int, Steps]) -> tuple[DraftVerdicts, list[int]]:
        """The verdicts `steps` (vLLM's per-request verify steps at a static k, by request id)
        reveal for `requests`, and the ids left out because their steps do not tile the output."""
        untiled: list[int] = []
        accepted: list[tuple[int, ...]] = []
        rejected: list[tuple[int, ...]] = []
        for r in requests:
            drafted, took = steps.get(r.request_id, ((), ()))
            if len(drafted) != len(took) or any(not 0 <= a <= d for d, a in zip(drafted, took, strict=True)):
                raise ValueError(f"steps of request {r.request_id}: need as many drafted as accepted counts, "
                                 f"0 <= accepted <= drafted; got {list(drafted)}, {list(took)}")  # fmt: skip
            acc, rej, g = [], [], 1
            for d, a in zip(drafted, took, strict=True):
                acc.extend(range(g, g + a))
                if a < d:
                    rej.append(g + a)
                g += a + 1
            last = g - (took[-1] + 1) if took else g
            if r.output_len > 1 and not (last < r.output_len <= g):  # the last step ends the output
                untiled.append(r.request_id)
                acc, rej = [], []
            accepted.append(tuple(acc))
            rejected.append(tuple(rej))
        shapes = tuple((r.prompt_len, r.output_len) for r in requests)
        return cls(shapes, tuple(accepted), tuple(rejected)), untiled

    def merged(self, other: DraftVerdicts, differences: str = "first") -> tuple[DraftVerdicts, int, int]:
        """Both runs' verdicts, with how many positions both revealed and on how many of those
        they differ (batch numerics can flip a close call). Where they differ: this run's
        verdict (`differences="first"`), or none (`"drop"`: the simulator draws it)."""
        if differences not in ("first", "drop"):
            raise ValueError(f"differences: {differences!r} is not one of ['first', 'drop']")
        if other.shapes != self.shapes:
            raise ValueError("verdicts: cannot merge runs of different request sets")
        accepted, rejected, both, differ = [], [], 0, 0
        for acc, rej, acc2, rej2 in zip(self.accepted, self.rejected, other.accepted, other.rejected, strict=True):
            mine = {**dict.fromkeys(acc, True), **dict.fromkeys(rej, False)}
            theirs = {**dict.fromkeys(acc2, True), **dict.fromkeys(rej2, False)}
            common = mine.keys() & theirs.keys()
            both += len(common)
            differ += sum(mine[p] != theirs[p] for p in common)
            merged = {**theirs, **mine}
            if differences == "drop":
                for p in common:
                    if mine[p] != theirs[p]:
                        del merged[p]
            accepted.append(tuple(sorted(p for p, ok in merged.items() if ok)))
            rejected.append(tuple(sorted(p for p, ok in merged.items() if not ok)))
        return DraftVerdicts(self.shapes, tuple(accepted), tuple(rejected)), both, differ

    def thinned(self, drop: float, seed: int) -> DraftVerdicts:
        """These verdicts less a random `drop` share of them (each position left out with that
        probability, seeded), which the simulator then draws: how much an outcome turns on a
        few verdicts of this request set."""
        if not 0.0 <= drop <= 1.0:
            raise ValueError(f"drop: {drop!r} must lie in [0, 1]")
        rng = np.random.default_rng(seed)

        def keep(ps: tuple[int, ...]) -> tuple[int, ...]:
            return tuple(p for p, u in zip(ps, rng.random(len(ps)), strict=True) if u >= drop)

        pairs = [(keep(a), keep(r)) for a, r in zip(self.accepted, self.rejected, strict=True)]
        return DraftVerdicts(self.shapes, tuple(a for a, _ in pairs), tuple(r for _, r in pairs))

    @property
    def revealed(self) -> int:
        return sum(map(len, self.accepted)) + sum(map(len, self.rejected))

    @property
    def share(self) -> float:
        """Accepted share of the revealed positions (not a controller's verified share: a run
        verifies past a rejection only in other steps)."""
        return sum(map(len, self.accepted)) / max(self.revealed, 1)

    def luck_at(self, requests: Sequence[Request], k_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(request index, output position, accepted) of every known verdict an engine drafting
        up to `k_max` tokens can meet, for an episode of `requests`, which must be the request
        set the verdicts were measured on."""
        shapes = tuple((r.prompt_len, r.output_len) for r in requests)
        if shapes != self.shapes:
            first = next((i for i, (a, b) in enumerate(zip(shapes, self.shapes, strict=False)) if a != b),
                         min(len(shapes), len(self.shapes)))  # fmt: skip
            raise ValueError(f"verdicts were measured on another request set ({len(self.shapes)} requests; "
                             f"the episode has {len(shapes)}, first difference at request {first})")  # fmt: skip
        pairs = list(zip(self.accepted, self.rejected, strict=True))
        rid = np.repeat(np.arange(len(shapes)), [len(a) + len(r) for a, r in pairs])
        pos = np.array([p for a, r in pairs for p in (*a, *r)], dtype=np.int64)
        ok = np.array([v for a, r in pairs for v in (*(True,) * len(a), *(False,) * len(r))], dtype=bool)
        # A request's last step drafts past its output's end (vLLM does not shorten it) and
        # its verdicts there count as any; positions past the longest draft are never met.
        meets = pos < np.array([o for _, o in shapes], dtype=np.int64)[rid] + k_max
        return rid[meets], pos[meets], ok[meets]

    def to_json(self) -> dict[str, Any]:
        return {"shapes": [list(s) for s in self.shapes], "accepted": [list(a) for a in self.accepted],
                "rejected": [list(r) for r in self.rejected]}  # fmt: skip

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DraftVerdicts:
        missing = [k for k in ("shapes", "accepted", "rejected") if k not in d]
        if missing:
            raise ValueError(f"verdicts: missing fields {missing}")
        return cls(tuple(tuple(s) for s in d["shapes"]), tuple(tuple(a) for a in d["accepted"]),
                   tuple(tuple(r) for r in d["rejected"]))  # fmt: skip
