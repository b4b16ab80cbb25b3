"""The frozen RL policy: a pure-numpy MLP that serving and evaluation run without torch.

A frozen policy is one `.npz` file (no pickle) written by `rlspec export` (agents/export.py):

- `obs_mean`, `obs_var` (float64, shape (NUM_FEATURES,)): the VecNormalize statistics;
- `w0, b0, w1, b1, ...`: the actor's hidden layers in torch's Linear layout, `W` of shape
  (out, in) so `h = act(W @ x + b)`; `w_out, b_out`: the action head (logits);
- `meta`: a JSON string: format, format_version, the feature schema (name, version, names),
  k_max, action_map, activation, obs_clip, epsilon, normalize, provenance.

The decision is SB3's deterministic `predict`: `x = clip((obs - mean) / sqrt(var + eps), -clip,
clip)` when `normalize`, the MLP, then the argmax of the logits (DESIGN section 7).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rlspec.config import ConfigError
from rlspec.control.action import Action
from rlspec.control.base import ControlContext, Controller
from rlspec.features import FEATURE_NAMES, NUM_FEATURES, SCHEMA_NAME, SCHEMA_VERSION, FeatureTracker

FORMAT = "rlspec-frozen-policy"
FORMAT_VERSION = 1
ACTIVATIONS = ("tanh", "relu")
DEFAULT_FILE = "policy.npz"


class PolicyLoadError(ConfigError):
    """A frozen-policy file is missing, unreadable or built for other features or actions."""


def action_map(k_max: int) -> list[str]:
    return [f"k={k}" for k in range(k_max + 1)] + ["offload"]


def schema() -> dict[str, Any]:
    return {"name": SCHEMA_NAME, "version": SCHEMA_VERSION, "features": list(FEATURE_NAMES)}


def save_policy(
    path: str | Path,
    hidden: list[tuple[np.ndarray, np.ndarray]],
    head: tuple[np.ndarray, np.ndarray],
    activation: str,
    obs_mean: np.ndarray | None = None,
    obs_var: np.ndarray | None = None,
    obs_clip: float = 10.0,
    epsilon: float = 1e-8,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a frozen policy atomically; `obs_mean=None` means no observation normalisation.

    `hidden` and `head` hold (W, b) with W in (out, in) layout; k_max = head outputs - 2.
    """
    normalize = obs_mean is not None
    k_max = int(np.shape(head[0])[0]) - 2
    arrays: dict[str, np.ndarray] = {
        "obs_mean": np.asarray(obs_mean if normalize else np.zeros(NUM_FEATURES), np.float64),
        "obs_var": np.asarray(obs_var if normalize else np.ones(NUM_FEATURES), np.float64),
    }
    for i, (w, b) in enumerate(hidden):
        arrays[f"w{i}"], arrays[f"b{i}"] = np.asarray(w), np.asarray(b)
    arrays["w_out"], arrays["b_out"] = np.asarray(head[0]), np.asarray(head[1])
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "schema": schema(),
        "k_max": k_max,
        "action_map": action_map(k_max),
        "activation": activation,
        "obs_clip": float(obs_clip),
        "epsilon": float(epsilon),
        "normalize": normalize,
        "provenance": provenance or {},
    }
    arrays["meta"] = np.array(json.dumps(meta, default=str))
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a policy file is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    FrozenPolicy(path)  # what we wrote must load
    return path


class FrozenPolicy:
    """Loads and validates a frozen policy; `act(obs)` is the deterministic action index."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        arrays, self.meta = _read(self.path)
        m = self.meta
        self.k_max: int = m["k_max"]
        self.activation: str = m["activation"]
        self.normalize: bool = m["normalize"]
        self.obs_clip = float(m["obs_clip"])
        self.provenance: dict[str, Any] = m.get("provenance") or {}
        f64 = np.float64
        self._mean = np.ascontiguousarray(arrays["obs_mean"], f64)
        self._std = np.sqrt(np.asarray(arrays["obs_var"], f64) + float(m["epsilon"]))
        self._x = np.empty(NUM_FEATURES, f64)
        # (W, b, output buffer) per layer; the head is last and has no activation.
        self._layers = [
            (np.ascontiguousarray(arrays[w], f64), np.ascontiguousarray(arrays[b], f64),
             np.empty(arrays[b].shape[0], f64))
            for w, b in _layer_names(arrays)
        ]  # fmt: skip
        self._hidden = self._layers[:-1]
        self._head = self._layers[-1]
        self._act = np.tanh if self.activation == "tanh" else _relu

    @property
    def hidden_sizes(self) -> list[int]:
        return [b.shape[0] for _, b, _ in self._hidden]

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """The action logits for one observation (a copy; `act` is the fast path)."""
        self.act(obs)
        return self._head[2].copy()

    def act(self, obs: np.ndarray) -> int:
        """Deterministic action index in 0..k_max+1. Reuses buffers: not thread-safe."""
        if obs.shape != (NUM_FEATURES,):
            raise ValueError(
                f"policy expects an observation of shape ({NUM_FEATURES},), got {obs.shape}"
            )
        x = self._x
        if self.normalize:
            np.subtract(obs, self._mean, out=x)
            np.divide(x, self._std, out=x)
            np.minimum(x, self.obs_clip, out=x)
            np.maximum(x, -self.obs_clip, out=x)
        else:
            np.copyto(x, obs)
        act = self._act
        for w, b, h in self._hidden:
            np.dot(w, x, out=h)
            np.add(h, b, out=h)
            act(h, out=h)
            x = h
        w, b, h = self._head
        np.dot(w, x, out=h)
        np.add(h, b, out=h)
        i = int(h.argmax())
        if h[i] != h[i]:  # argmax stops at the first NaN
            raise ValueError(f"policy logits are NaN for observation {obs.tolist()}")
        return i


def _relu(h: np.ndarray, out: np.ndarray) -> np.ndarray:
    return np.maximum(h, 0.0, out=out)


def _layer_names(arrays: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    n = sum(1 for name in arrays if name[0] == "w" and name[1:].isdigit())
    return [(f"w{i}", f"b{i}") for i in range(n)] + [("w_out", "b_out")]


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if not path.is_file():
        raise PolicyLoadError(f"{path}: no such frozen-policy file")
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception as exc:
        raise PolicyLoadError(
            f"{path}: not a readable frozen-policy .npz ({type(exc).__name__}: {exc})"
        ) from exc
    missing = [n for n in ("meta", "obs_mean", "obs_var", "w_out", "b_out") if n not in arrays]
    if missing:
        raise PolicyLoadError(f"{path}: frozen policy is missing array(s) {missing}")
    try:
        meta = json.loads(str(arrays["meta"][()]))
        if not isinstance(meta, dict):
            raise ValueError(f"expected a JSON object, got {type(meta).__name__}")
    except ValueError as exc:
        raise PolicyLoadError(f"{path}: 'meta' is not valid JSON metadata ({exc})") from exc
    _check_meta(path, meta)
    _check_arrays(path, arrays, meta)
    return arrays, meta


def _check_meta(path: Path, m: dict[str, Any]) -> None:
    if m.get("format") != FORMAT:
        raise PolicyLoadError(f"{path}: format is {m.get('format')!r}, expected {FORMAT!r}")
    if m.get("format_version") != FORMAT_VERSION:
        raise PolicyLoadError(
            f"{path}: format_version {m.get('format_version')!r}, this rlspec reads "
            f"{FORMAT_VERSION}; re-export the run with this rlspec (`rlspec export RUN_DIR`)"
        )
    got, want = m.get("schema") or {}, schema()
    if got != want:
        theirs = f"{got.get('name')!r} v{got.get('version')!r}"
        ours = f"{SCHEMA_NAME!r} v{SCHEMA_VERSION}"
        feats = list(got.get("features") or [])
        diff = ""
        if feats != want["features"]:
            extra = [f for f in feats if f not in FEATURE_NAMES]
            lost = [f for f in FEATURE_NAMES if f not in feats]
            diff = f"; its {len(feats)} features differ from the expected {NUM_FEATURES}"
            diff += f" (not expected: {extra}, missing: {lost})" if extra or lost else " (order)"
        raise PolicyLoadError(
            f"{path}: policy was trained on feature schema {theirs}, this rlspec computes "
            f"{ours}{diff}; retrain the policy on the current features, or serve it with the "
            f"rlspec version it was trained with (re-exporting does not change its features)"
        )
    k = m.get("k_max")
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise PolicyLoadError(f"{path}: meta.k_max must be an integer >= 0, got {k!r}")
    if m.get("action_map") != action_map(k):
        raise PolicyLoadError(
            f"{path}: meta.action_map {m.get('action_map')!r} does not match k_max={k} "
            f"(expected {action_map(k)!r})"
        )
    if m.get("activation") not in ACTIVATIONS:
        raise PolicyLoadError(
            f"{path}: meta.activation {m.get('activation')!r} not one of {list(ACTIVATIONS)}"
        )
    if not isinstance(m.get("normalize"), bool):
        raise PolicyLoadError(f"{path}: meta.normalize must be true or false")
    for key in ("obs_clip", "epsilon"):
        v = m.get(key)
        if not isinstance(v, int | float) or isinstance(v, bool) or not v >= 0:
            raise PolicyLoadError(f"{path}: meta.{key} must be a number >= 0, got {v!r}")


def _check_arrays(path: Path, a: dict[str, np.ndarray], m: dict[str, Any]) -> None:
    width = NUM_FEATURES
    for w, b in _layer_names(a):
        if w not in a or b not in a:
            raise PolicyLoadError(
                f"{path}: frozen policy is missing array {w if w not in a else b!r}"
            )
        W, B = a[w], a[b]
        if W.ndim != 2 or W.shape[1] != width or B.shape != (W.shape[0],):
            raise PolicyLoadError(
                f"{path}: layer {w}/{b} has shapes {W.shape}/{B.shape}, expected (n, {width})/(n,)"
            )
        width = W.shape[0]
    if width != m["k_max"] + 2:
        raise PolicyLoadError(
            f"{path}: action head has {width} outputs, k_max={m['k_max']} needs {m['k_max'] + 2}"
        )
    for name in ("obs_mean", "obs_var"):
        if a[name].shape != (NUM_FEATURES,):
            raise PolicyLoadError(
                f"{path}: {name} has shape {a[name].shape}, expected ({NUM_FEATURES},)"
            )
    for name, arr in a.items():
        if name != "meta" and not (arr.dtype.kind == "f" and np.isfinite(arr).all()):
            raise PolicyLoadError(f"{path}: array {name!r} is not finite floating point")
    if (a["obs_var"] < 0).any():
        raise PolicyLoadError(f"{path}: obs_var has negative entries")


class PolicyController(Controller):
    """A frozen policy behind the Controller interface (`policy:PATH`)."""

    def __init__(self, policy: FrozenPolicy, name: str | None = None):
        self.policy = policy
        self.k_max = policy.k_max
        self.name = name or f"policy:{policy.path}"

    @classmethod
    def load(cls, path: str | Path) -> PolicyController:
        """`path` is a frozen-policy `.npz` or a run directory holding `policy.npz`."""
        p = Path(path)
        if p.is_dir():
            if not (p / DEFAULT_FILE).is_file():
                hint = (
                    f"; it has a trained model: run `rlspec export {p}` to freeze it"
                    if any(p.glob("*.zip"))
                    else ""
                )
                raise PolicyLoadError(f"{p}: no {DEFAULT_FILE} in this run directory{hint}")
            p = p / DEFAULT_FILE
        return cls(FrozenPolicy(p), name=f"policy:{path}")

    def reset(self, ctx: ControlContext) -> None:
        if ctx.k_max != self.k_max:
            raise ConfigError(
                f"{self.name}: policy was trained for k_max={self.k_max}, but the engine "
                f"runs k_max={ctx.k_max}; set engine.k_max: {self.k_max} or retrain"
            )
        super().reset(ctx)

    def decide(self, obs: FeatureTracker) -> Action:
        return Action.from_index(self.policy.act(obs.vector()), self.k_max)
