"""Context faithfulness: does the model use what its context says (C6, C7, C8)?

- ``records``: JSONL datasets with a documented schema, validated line by line;
- C6 (copy vs hallucination), C7 (blank tool output) and C8 (off-context questions) each
  have a generator of seeded datasets, an evaluator for any loaded model, and a report
  section in ``myopia.experiments``.
"""
