"""Cost of current/future attribution on SmolLM2: the fast method against the exact sweep.

Times first-order attribution of every head and MLP at every position of N × T tokens
(two forward and two backward passes), times an exact ablation sweep of a sample of
(component, position) pairs on the same tokens, scales the sample to the full sweep
(components × (T - 1) pairs) and prints the ratio. With ``--agreement`` it also measures
how well the fast method ranks a sample of heads like the exact one (Spearman).

    OMP_NUM_THREADS=1 python bench/attribution.py                 # 4 x 256, 5 x 8 sample
    OMP_NUM_THREADS=1 python bench/attribution.py --agreement --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from myopia.attribution import agreement, all_components, attribute, sample
from myopia.data.text import load_corpus, token_chunks
from myopia.models.loading import load_model


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--n-sequences", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--ablation", default="mean", choices=["mean", "zero"])
    parser.add_argument("--sample-components", type=int, default=5)
    parser.add_argument("--sample-positions", type=int, default=8)
    parser.add_argument(
        "--agreement",
        action="store_true",
        help="also compare fast and exact on a sample of heads (sizes below)",
    )
    parser.add_argument("--agreement-heads", type=int, default=20)
    parser.add_argument("--agreement-positions", type=int, default=16)
    parser.add_argument("--agreement-seq-len", type=int, default=64)
    parser.add_argument("--agreement-sequences", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    model, tokenizer = load_model(args.model)
    corpus = load_corpus(None)
    ids = token_chunks(corpus, tokenizer, args.seq_len, args.n_sequences, seed=args.seed)
    n_components = len(all_components(model))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {args.model}, "
        f"{n_components} components, {args.n_sequences} x {args.seq_len} tokens, "
        f"{args.ablation} ablation",
        flush=True,
    )

    fast, fast_s = timed(lambda: attribute(model, ids, ablation=args.ablation))
    print(f"fast (first order), all components x all positions: {fast_s:.1f} s", flush=True)

    names, positions = sample(
        model, args.seq_len, args.sample_components, args.sample_positions, seed=args.seed
    )
    exact, exact_s = timed(
        lambda: attribute(
            model,
            ids,
            method="ablation",
            ablation=args.ablation,
            components=names,
            positions=positions,
        )
    )
    pairs = len(names) * len(positions)
    full_pairs = n_components * (args.seq_len - 1)
    full_s = exact_s / pairs * full_pairs
    ratio = full_s / fast_s
    print(
        f"exact (ablation), {len(names)} components x {len(positions)} positions = {pairs} "
        f"pairs: {exact_s:.1f} s ({exact_s / pairs:.2f} s per pair)\n"
        f"exact full sweep, {full_pairs} pairs, estimated: {full_s:.0f} s "
        f"({full_s / 3600:.1f} h)\n"
        f"ratio exact full sweep / fast: {ratio:.0f}",
        flush=True,
    )
    sample_agreement = agreement(fast, exact)
    print(f"agreement on the timed sample: {_fmt(sample_agreement)}", flush=True)
    results = {
        "model": args.model,
        "threads": torch.get_num_threads(),
        "n_sequences": args.n_sequences,
        "seq_len": args.seq_len,
        "ablation": args.ablation,
        "n_components": n_components,
        "fast_s": fast_s,
        "exact_sample": {"components": names, "positions": positions, "seconds": exact_s},
        "exact_full_estimated_s": full_s,
        "ratio": ratio,
        "sample_agreement": sample_agreement,
    }

    if args.agreement:
        small = token_chunks(
            corpus,
            tokenizer,
            args.agreement_seq_len,
            args.agreement_sequences,
            seed=args.seed + 1,
        )
        heads, head_positions = sample(
            model,
            args.agreement_seq_len,
            args.agreement_heads,
            args.agreement_positions,
            heads_only=True,
            seed=args.seed,
        )
        small_fast = attribute(model, small, ablation=args.ablation)
        small_exact, small_s = timed(
            lambda: attribute(
                model,
                small,
                method="ablation",
                ablation=args.ablation,
                components=heads,
                positions=head_positions,
            )
        )
        rho = agreement(small_fast, small_exact)
        print(
            f"agreement, {len(heads)} heads x {len(head_positions)} positions on "
            f"{args.agreement_sequences} x {args.agreement_seq_len} tokens "
            f"(exact: {small_s:.0f} s): {_fmt(rho)}",
            flush=True,
        )
        results["agreement"] = {"heads": heads, "positions": head_positions, **rho}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def _fmt(rho: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in rho.items())


if __name__ == "__main__":
    main()
