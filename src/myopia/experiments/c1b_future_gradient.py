"""C1(b): how much of a pretrained model's gradient serves later tokens, per layer.

For each text sequence, the gradient of the mean next-token loss is split into its
current part (the exact myopic gradient, mode ``kv``) and its future part (the rest).
The future share |future| / (|current| + |future|) is computed per layer and averaged
over sequences, with 95% Student-t intervals over sequences.

The reference (CLAIMS.md v2): the same split, on the same sequences, of the same
architecture at random initialisation (SmolLM2's config, fresh weights). Part of any future
share comes from the architecture itself (every position's keys and values feed later
ones); the difference from the reference is what training made of it.

C1's verdict rule is about the myopia gap of C1(a), a training experiment; this section
describes the gradient but does not decide the claim.
"""

from __future__ import annotations

from dataclasses import replace

from myopia.gradients.future_share import FutureShareConfig, measure
from myopia.gradients.plots import plot_future_share
from myopia.protocol import preset
from myopia.report.context import ReportContext
from myopia.report.registry import Plot, SectionResult, section


@section("C1b", claim="C1", title="Future share of the gradient norm, per layer")
def future_gradient_share(ctx: ReportContext) -> SectionResult:
    config = replace(preset(FutureShareConfig, ctx.quick), seed=ctx.seed)
    result = measure(
        ctx.model, ctx.tokenizer, config, ctx.documents(), show_progress=ctx.config.show_progress
    )
    out = ctx.section_dir("C1b")
    plot = plot_future_share(
        result,
        out / "future_share_by_layer.png",
        f"{ctx.config.model}: future share of the gradient norm per layer "
        f"({result.n_sequences} × {result.seq_len} tokens, mean and 95% CI)",
    )
    overall = result.overall_interval()
    by_group = result.group_intervals()
    layers = [g for g in result.groups if g.startswith("layer ")]
    top = max(layers, key=lambda g: by_group[g].mean)
    low = min(layers, key=lambda g: by_group[g].mean)
    summary = (
        f"Over {result.n_sequences} sequences of {result.seq_len} tokens of "
        f"{ctx.corpus_name()}, the future part carries a share of {overall.mean:.3f} "
        f"(95% CI [{overall.low:.3f}, {overall.high:.3f}]) of the gradient norm of the whole "
        f"model. By layer it is highest in {top} ({by_group[top].mean:.3f}) and lowest in "
        f"{low} ({by_group[low].mean:.3f}). Share = |future| / (|current| + |future|): 0 means "
        "the gradient only serves the current token, 1 that it only serves later ones."
    )
    reference = result.reference
    ref_overall = None if reference is None else reference.overall_interval()
    ref_by_group = {} if reference is None else reference.group_intervals()
    if ref_overall is not None:
        summary += (
            f" The same architecture at random initialisation gives {ref_overall.mean:.3f} "
            f"(95% CI [{ref_overall.low:.3f}, {ref_overall.high:.3f}]) on the same "
            "sequences: the reference the trained model's share is read against."
        )

    def interval_text(ci) -> str:
        return "" if ci is None else f"{ci.mean:.3f} [{ci.low:.3f}, {ci.high:.3f}]"

    rows = [
        {
            "group": g,
            "future share": ci.mean,
            "95% CI": f"[{ci.low:.3f}, {ci.high:.3f}]",
            "at random init (95% CI)": interval_text(ref),
            "n": ci.n,
        }
        for g, ci, ref in [
            ("whole model", overall, ref_overall),
            *((g, ci, ref_by_group.get(g)) for g, ci in by_group.items()),
        ]
    ]
    return SectionResult(
        summary=summary,
        numbers=result.to_dict(),
        rows=rows,
        plots=[
            Plot(
                str(plot.relative_to(ctx.config.out)),
                "Future share of the gradient norm per layer (black), and of the same "
                "architecture at random initialisation (red, dashed); squares: attention "
                "parameters only, triangles: MLP parameters only (trained model).",
            )
        ],
        budget={
            "n_sequences": config.n_sequences,
            "seq_len": config.seq_len,
            "mode": config.mode,
            "reference": "random initialisation" if config.reference else "none",
            "text": "eval split",
        },
    )
