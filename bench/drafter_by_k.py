"""What the drafter's proposals cost, by draft length and batch, against what a profile charges.

    python bench/drafter_by_k.py --profile cpu-tiny-amx
    python bench/drafter_by_k.py --profile ee6eccb:rlspec/perf/profiles/cpu-tiny-amx.yaml --out drafter_by_k-cpu-tiny-amx-before

Reads the iterations `rlspec calibrate` saved (the fit's own samples: repeats merged, mixed-k
steps dropped) and, for every decode-only step with the drafter resident, sets the time vLLM's
propose() took beside what the profile's cost model charges the drafter for the same step (the
step with the drafter resident less the same step without it). A charge that is right on
average but wrong by k shows up here as a ratio falling or rising with k: notes/calibration.md
section 23 found k = 1 measured 1.10-1.17x its charge and k = 4 0.92-0.99x before the fixed
proposal cost (`draft_propose_s`) was in the model (`REV:PATH` reads a profile as git holds
it at REV). Writes results/NAME.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from common import ROOT, repo_path, write_result

sys.path.insert(0, str(ROOT))

from rlspec.calibration.live import LiveMeasurement  # noqa: E402
from rlspec.calibration.plan import samples_from_records  # noqa: E402
from rlspec.perf.profile import load_profile  # noqa: E402
from rlspec.perf.step_time import StepTimeModel  # noqa: E402

BATCH_BANDS = ((1, 2), (3, 4), (5, 8), (9, 16), (17, None))  # decode batch sizes, inclusive


def band_of(batch: int) -> int:
    return next(i for i, (lo, hi) in enumerate(BATCH_BANDS) if lo <= batch and (hi is None or batch <= hi))


def band_name(i: int) -> str:
    lo, hi = BATCH_BANDS[i]
    return f"{lo}+" if hi is None else f"{lo}-{hi}"


def profile_at(spec: str) -> Path | str:
    """A profile name or YAML path, or REV:PATH for the file as git holds it at commit REV."""
    rev, sep, path = spec.partition(":")
    if not sep:
        return spec
    text = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True)
    if text.returncode:
        raise SystemExit(f"--profile {spec}: {text.stderr.strip()}")
    out = Path(tempfile.mkdtemp()) / Path(path).name
    out.write_text(text.stdout)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu-tiny-amx", help="a shipped profile's name or a profile YAML")
    ap.add_argument("--measurements", default=None, metavar="JSON",
                    help="saved iterations (default: results/calibration_measurements-<profile name>.json)")  # fmt: skip
    ap.add_argument("--out", default=None, metavar="NAME", help="results/NAME.json (default: drafter_by_k-<profile name>)")
    args = ap.parse_args(argv)
    prof = load_profile(profile_at(args.profile))
    path = Path(args.measurements or ROOT / f"results/calibration_measurements-{prof.name}.json")
    samples = samples_from_records(LiveMeasurement.from_dict(json.loads(path.read_text())).records).samples
    model = StepTimeModel(prof)
    groups: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)  # (k, band) -> (measured, charged)
    for s in samples:
        if s.drafter_resident and s.decode_reqs and not s.prefill_tokens and s.drafter_time_s is not None:
            charge = model.iteration(s.decode_reqs, s.k, 0, s.context, True) - model.iteration(
                s.decode_reqs, s.k, 0, s.context, False
            )
            groups[(s.k, band_of(s.decode_reqs))].append((s.drafter_time_s, charge))
    rows = [
        {"k": k, "batch": band_name(band), "steps": len(v),
         "measured_ms": round(1e3 * statistics.fmean(m for m, _ in v), 3),
         "charged_ms": round(1e3 * statistics.fmean(c for _, c in v), 3),
         "measured_over_charged_median": round(statistics.median(m / c for m, c in v), 3)}
        for (k, band), v in sorted(groups.items())
    ]  # fmt: skip
    for r in rows:
        print(f"k={r['k']} batch {r['batch']:>5}: {r['steps']:4d} steps, drafter {r['measured_ms']:6.2f} ms measured, "
              f"{r['charged_ms']:6.2f} ms charged, median ratio {r['measured_over_charged_median']:.3f}")  # fmt: skip
    write_result(args.out or f"drafter_by_k-{prof.name}", {
        "profile": prof.name,
        "profile_path": args.profile,
        "profile_fitted": prof.fitted.__dict__ if prof.fitted else None,
        "measurements": repo_path(path),
        "rows": rows,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
