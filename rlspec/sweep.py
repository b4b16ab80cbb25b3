"""Latency vs request rate: the curve that shows where speculation stops paying."""

from __future__ import annotations

from collections.abc import Sequence

from tqdm import tqdm

from rlspec.control.registry import BaselinesConfig
from rlspec.evaluate import evaluate
from rlspec.metrics import EpisodeMetrics
from rlspec.scenario import Scenario


def run_sweep(
    scenario: Scenario,
    rates: Sequence[float],
    controllers: Sequence[str],
    seed: int | None = None,
    backend: str = "sim",
    baselines: BaselinesConfig | None = None,
    progress: bool = False,
) -> dict:
    """`evaluate` at each rate; every controller sees the same workload at a given rate."""
    seed = scenario.seed if seed is None else seed
    results: list[dict[str, EpisodeMetrics]] = []
    bar = tqdm(total=len(rates) * len(controllers), desc="sweep", unit="run", disable=not progress)
    for rate in rates:
        bar.set_postfix(rate=rate)
        results.append(
            evaluate(
                scenario.with_rate(rate),
                controllers,
                seed=seed,
                backend=backend,
                baselines=baselines,
                on_result=lambda *_: bar.update(),
            )  # fmt: skip
        )
    bar.close()
    return {"seed": seed, "results": results}


def plot_sweep(
    rates: Sequence[float],
    results: Sequence[dict[str, EpisodeMetrics]],
    controllers: Sequence[str],
    path: str,
    title: str = "",
    metric: str = "mean_latency_s",
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for c in controllers:
        ax.plot(rates, [getattr(r[c], metric) for r in results], marker="o", label=c)
    ax.set_xlabel("request rate (req/s)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
