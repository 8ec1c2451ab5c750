"""Benchmarks that compare this app, bare Flask and the tutorial design side by side in one run.

``python -m bench`` runs everything (minutes); ``python -m bench --smoke`` runs the same code
with tiny counts (seconds). See ``bench/__main__.py`` for what is measured and how.
"""
