"""Experiments, one module per measurement of CLAIMS.md.

Each module registers its report section (and, where its numbers decide a claim, the
claim's rule) with ``myopia.report.registry``; ``myopia report`` imports them all.
"""
