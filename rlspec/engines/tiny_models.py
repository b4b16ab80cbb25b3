"""Tiny local HF Llama target/draft pairs for the live vLLM engine (no download).

Nothing can be downloaded here, so the live engine runs on models we make ourselves
(DESIGN.md section 8):

- the target is a randomly initialised Llama with `target_layers` layers;
- the drafter is the target's first `draft_layers` layers plus its embeddings, final
  norm and LM head, saved as its own checkpoint;
- the output projections (attention `o_proj` and MLP `down_proj`) of the target's later
  layers are scaled by `acceptance_knob`. With the knob at 0 those layers add nothing to
  the residual stream, so the target computes exactly what the drafter computes and every
  draft is accepted; at 1 they are untouched random layers and the drafter agrees with
  the target on few tokens. In between the agreement is tunable.

Each directory gets a small word-level tokenizer (`PreTrainedTokenizerFast`, tokens
"t0".."tN" plus `<unk> <s> </s> <pad>`) so vLLM's OpenAI server works with text prompts;
the live backend itself sends token ids and needs no tokenizer.

Same arguments and seed give byte-identical checkpoints.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
INFO_FILE = "rlspec_tiny.json"


@dataclass(frozen=True)
class TinyPairSpec:
    """Shape of a tiny pair; the defaults are the CPU pair DESIGN.md section 1 measures."""

    target_layers: int = 16
    hidden: int = 1024
    draft_layers: int = 1
    acceptance_knob: float = 0.05
    vocab_size: int = 4096
    seed: int = 0
    num_heads: int = 16  # head dim = hidden / num_heads, must be >= 32 (vLLM CPU attention)
    num_kv_heads: int | None = None  # None = num_heads (no GQA)
    intermediate_size: int | None = None  # None = round(2.75 * hidden / 64) * 64
    max_position_embeddings: int = 4096
    dtype: str = "bfloat16"  # "bfloat16" | "float32" | "float16"
    embed_std: float = 0.02  # embedding init scale (HF default); larger = token identity dominates

    def validate(self) -> None:
        def bad(field: str, msg: str) -> ValueError:
            return ValueError(f"{field}: {msg}")

        if self.target_layers < 2:
            raise bad("target_layers", f"must be >= 2, got {self.target_layers}")
        if not 1 <= self.draft_layers < self.target_layers:
            raise bad(
                "draft_layers",
                f"must be in [1, target_layers-1={self.target_layers - 1}], got {self.draft_layers}",
            )
        if not 0.0 <= self.acceptance_knob <= 1.0:
            raise bad("acceptance_knob", f"must be in [0, 1], got {self.acceptance_knob}")
        if self.vocab_size < len(SPECIAL_TOKENS) + 2:
            raise bad("vocab_size", f"must be >= {len(SPECIAL_TOKENS) + 2}, got {self.vocab_size}")
        if self.num_heads < 1 or self.hidden % self.num_heads:
            raise bad("num_heads", f"must divide hidden={self.hidden}, got {self.num_heads}")
        head_dim = self.hidden // self.num_heads
        if head_dim < 32:
            raise bad(
                "hidden",
                f"head dim hidden/num_heads = {head_dim} must be >= 32 (vLLM CPU attention)",
            )
        kv = self.kv_heads
        if kv < 1 or self.num_heads % kv:
            raise bad("num_kv_heads", f"must divide num_heads={self.num_heads}, got {kv}")
        if self.dtype not in ("bfloat16", "float32", "float16"):
            raise bad("dtype", f"must be bfloat16, float32 or float16, got {self.dtype!r}")
        if self.max_position_embeddings < 16:
            raise bad("max_position_embeddings", "must be >= 16")

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads if self.num_kv_heads is not None else self.num_heads

    @property
    def ffn(self) -> int:
        if self.intermediate_size is not None:
            return self.intermediate_size
        return max(64, round(2.75 * self.hidden / 64) * 64)


# Small pair for tests: starts in a few seconds, one decode step is a few milliseconds.
TEST_SPEC = TinyPairSpec(
    target_layers=4,
    hidden=256,
    draft_layers=1,
    acceptance_knob=0.07,  # greedy agreement ~0.65
    vocab_size=1024,
    num_heads=4,
    max_position_embeddings=2048,
)


def _build_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for i in range(len(SPECIAL_TOKENS), vocab_size):
        vocab[f"t{i}"] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins tokens with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        clean_up_tokenization_spaces=False,
    )


def _llama_config(spec: TinyPairSpec, layers: int):
    import torch
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden,
        intermediate_size=spec.ffn,
        num_hidden_layers=layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        torch_dtype=getattr(torch, spec.dtype),
    )


def build_tiny_pair(
    out_dir: str | Path,
    *,
    target_layers: int = TinyPairSpec.target_layers,
    hidden: int = TinyPairSpec.hidden,
    draft_layers: int = TinyPairSpec.draft_layers,
    acceptance_knob: float = TinyPairSpec.acceptance_knob,
    vocab_size: int = TinyPairSpec.vocab_size,
    seed: int = TinyPairSpec.seed,
    num_heads: int = TinyPairSpec.num_heads,
    num_kv_heads: int | None = None,
    intermediate_size: int | None = None,
    max_position_embeddings: int = TinyPairSpec.max_position_embeddings,
    dtype: str = TinyPairSpec.dtype,
) -> tuple[Path, Path]:
    """Write `out_dir/target` and `out_dir/draft`; returns their paths.

    Raises ValueError naming the argument for an impossible shape.
    """
    spec = TinyPairSpec(
        target_layers=target_layers,
        hidden=hidden,
        draft_layers=draft_layers,
        acceptance_knob=float(acceptance_knob),
        vocab_size=vocab_size,
        seed=seed,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        dtype=dtype,
    )
    return build_from_spec(out_dir, spec)


def build_from_spec(out_dir: str | Path, spec: TinyPairSpec) -> tuple[Path, Path]:
    spec.validate()
    import torch
    from transformers import LlamaForCausalLM

    out = Path(out_dir)
    target_dir, draft_dir = out / "target", out / "draft"
    target_dir.mkdir(parents=True, exist_ok=True)
    draft_dir.mkdir(parents=True, exist_ok=True)

    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(spec.seed)
        with torch.no_grad():
            target = LlamaForCausalLM(_llama_config(spec, spec.target_layers)).float()
            target.model.embed_tokens.weight.normal_(0.0, spec.embed_std)
            for layer in target.model.layers[spec.draft_layers :]:
                layer.self_attn.o_proj.weight.mul_(spec.acceptance_knob)
                layer.mlp.down_proj.weight.mul_(spec.acceptance_knob)
            draft = LlamaForCausalLM(_llama_config(spec, spec.draft_layers)).float()
            draft.model.embed_tokens.load_state_dict(target.model.embed_tokens.state_dict())
            for i in range(spec.draft_layers):
                draft.model.layers[i].load_state_dict(target.model.layers[i].state_dict())
            draft.model.norm.load_state_dict(target.model.norm.state_dict())
            draft.lm_head.load_state_dict(target.lm_head.state_dict())
    finally:
        torch.random.set_rng_state(gen_state)

    dt = getattr(torch, spec.dtype)
    tokenizer = _build_tokenizer(spec.vocab_size)
    for model, path, role in ((target, target_dir, "target"), (draft, draft_dir, "draft")):
        model.to(dt)
        model.generation_config.do_sample = False
        model.save_pretrained(path, safe_serialization=True)
        tokenizer.save_pretrained(path)
        info = {
            "role": role,
            "spec": asdict(spec),
            "num_params": sum(p.numel() for p in model.parameters()),
        }
        (path / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return target_dir, draft_dir


def greedy_agreement(
    target_dir: str | Path,
    draft_dir: str | Path,
    *,
    num_prompts: int = 8,
    prompt_len: int = 16,
    gen_len: int = 64,
    seed: int = 0,
) -> float:
    """Share of positions, along the target's greedy continuation, where the drafter's
    greedy next token equals the target's (per-token acceptance under greedy decoding).

    Runs in HF transformers, not vLLM; a quick check of the acceptance knob.
    """
    import torch
    from transformers import LlamaForCausalLM

    target = LlamaForCausalLM.from_pretrained(target_dir, torch_dtype=torch.float32).eval()
    draft = LlamaForCausalLM.from_pretrained(draft_dir, torch_dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(seed)
    vocab = target.config.vocab_size
    ids = torch.randint(len(SPECIAL_TOKENS), vocab, (num_prompts, prompt_len), generator=g)
    with torch.no_grad():
        seq = target.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=gen_len,
            do_sample=False,
            min_new_tokens=gen_len,
            pad_token_id=3,
        )
        t_next = target(seq).logits.argmax(-1)[:, prompt_len - 1 : -1]
        d_next = draft(seq).logits.argmax(-1)[:, prompt_len - 1 : -1]
    return float((t_next == d_next).float().mean())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rlspec models tiny`."""
    d = TinyPairSpec()
    parser.add_argument("--out", required=True, help="output folder (gets target/ and draft/)")
    parser.add_argument("--target-layers", type=int, default=d.target_layers)
    parser.add_argument("--hidden", type=int, default=d.hidden)
    parser.add_argument("--draft-layers", type=int, default=d.draft_layers)
    parser.add_argument(
        "--acceptance-knob",
        type=float,
        default=d.acceptance_knob,
        help="scale of the later layers' output projections: 0 = drafter always agrees",
    )
    parser.add_argument("--vocab-size", type=int, default=d.vocab_size)
    parser.add_argument("--num-heads", type=int, default=d.num_heads)
    parser.add_argument("--num-kv-heads", type=int, default=None)
    parser.add_argument("--intermediate-size", type=int, default=None)
    parser.add_argument("--max-position-embeddings", type=int, default=d.max_position_embeddings)
    parser.add_argument("--dtype", default=d.dtype, choices=["bfloat16", "float32", "float16"])
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--test-pair",
        action="store_true",
        help="the small pair the tests use (overrides the shape options)",
    )
    parser.add_argument(
        "--measure-agreement",
        action="store_true",
        help="also print the drafter's greedy agreement with the target (HF, CPU)",
    )


def run(args: argparse.Namespace) -> int:
    """Build the pair described by `args` (from `add_arguments`); prints where it went."""
    if args.test_pair:
        spec = TEST_SPEC
    else:
        spec = TinyPairSpec(
            target_layers=args.target_layers,
            hidden=args.hidden,
            draft_layers=args.draft_layers,
            acceptance_knob=args.acceptance_knob,
            vocab_size=args.vocab_size,
            seed=args.seed,
            num_heads=args.num_heads,
            num_kv_heads=args.num_kv_heads,
            intermediate_size=args.intermediate_size,
            max_position_embeddings=args.max_position_embeddings,
            dtype=args.dtype,
        )
    try:
        import transformers

        transformers.logging.disable_progress_bar()
    except ImportError:
        pass
    t0 = time.perf_counter()
    target_dir, draft_dir = build_from_spec(args.out, spec)
    t_info = json.loads((target_dir / INFO_FILE).read_text())
    d_info = json.loads((draft_dir / INFO_FILE).read_text())
    print(f"target: {target_dir} ({t_info['num_params'] / 1e6:.1f}M params)")
    print(f"draft:  {draft_dir} ({d_info['num_params'] / 1e6:.1f}M params)")
    print(f"built in {time.perf_counter() - t0:.1f}s")
    if getattr(args, "measure_agreement", False):
        print(f"greedy agreement: {greedy_agreement(target_dir, draft_dir):.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rlspec models tiny", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
