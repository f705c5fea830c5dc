"""Time head detection on SmolLM2 and print its top heads of each kind.

Run: ``OMP_NUM_THREADS=1 python bench/head_detection.py [--batch 8] [--seq-len 128]``

For one batch of ``batch`` x ``seq_len`` tokens it times, median of ``--repeats`` after a
warm-up:

- ``detect_heads``: previous-token, duplicate-token and induction scores from one batched
  forward pass with attention weights (eager attention, base model only);
- ``induction_stripe_scores``: the stripe on ``batch`` rows of BOS + 2 x n repeated random
  tokens, n = (seq_len - 1) // 2, also one pass;
- a plain forward pass of the same batch with the model's own backend (sdpa), logits
  included, for scale.

Then it prints the top heads of each kind (``layer.head score``) and the loss on each copy
of the repeated tokens. The text is the default corpus (Shakespeare), BOS first.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from myopia.data.text import load_corpus
from myopia.heads import detect_heads, induction_stripe_scores, repeated_random_tokens
from myopia.heads.induction import repeated_token_losses
from myopia.heads.scan import text_batch
from myopia.models.loading import load_model


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--exclude-bos", action="store_true", help="score without the attention to token 0"
    )
    args = parser.parse_args()

    start = time.perf_counter()
    model, tokenizer = load_model(args.model)
    load_s = time.perf_counter() - start
    ids = text_batch(tokenizer, load_corpus(), args.seq_len, args.batch, args.seed)
    n = (args.seq_len - (tokenizer.bos_token_id is not None)) // 2
    repeated = repeated_random_tokens(tokenizer, n, args.batch, args.seed)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model} "
        f"(loaded in {load_s:.1f} s), batch {args.batch} x {args.seq_len} tokens"
    )

    results = {}

    def detect():
        results["detection"] = detect_heads(model, ids, exclude_bos=args.exclude_bos)

    def stripe():
        results["stripe"] = induction_stripe_scores(model, n, input_ids=repeated)

    def plain():
        with torch.inference_mode():
            model(input_ids=ids, use_cache=False)

    timings = {
        "detect_heads (3 kinds, 1 pass)": median_time(detect, args.repeats),
        f"induction stripe (2 x {n} tokens, 1 pass)": median_time(stripe, args.repeats),
        f"plain forward ({model.config._attn_implementation}, with logits)": median_time(
            plain, args.repeats
        ),
    }
    for name, seconds in timings.items():
        print(f"{name:45} {seconds * 1000:9.1f} ms")

    detection, stripe_scores = results["detection"], results["stripe"]
    kept = "excluded" if args.exclude_bos else "kept"
    print(f"\ntop {args.top} heads (layer.head score); TransformerLens 'mul', BOS {kept}")
    for scores in (detection, stripe_scores):
        for kind in scores.kinds:
            best = "  ".join(
                f"{h.layer}.{h.head} {h.score:.3f}" for h in scores.top(kind, args.top)
            )
            print(f"{kind:17} {best}")
    loss = repeated_token_losses(model, repeated, n)
    print(
        f"loss on repeated random tokens: first copy {float(loss.first.mean()):.3f}, "
        f"second copy {float(loss.second.mean()):.3f} nats"
    )


if __name__ == "__main__":
    main()
