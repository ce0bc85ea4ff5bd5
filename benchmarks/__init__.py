"""The benchmark runner and its recorded results (``python -m benchmarks``).

The measuring code lives in the package (:mod:`beamrouting._cli._bench`, also behind
``beamrouting bench``); this runner adds the recorded results in ``benchmarks/results``:
JSON, a markdown table and, with matplotlib installed, a chart.
"""
