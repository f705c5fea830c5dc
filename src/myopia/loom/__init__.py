"""The loom: a local web app for growing, pruning and editing a tree of generations by hand.

``store`` keeps one tree in one SQLite file; ``weave`` grows it with a generation backend;
``formats`` imports and exports JSON (its own, and socketteer/loom's); ``app`` is the HTTP
API and the browser page in ``static/``; ``server`` runs it; ``cli`` is ``myopia loom``.
"""
