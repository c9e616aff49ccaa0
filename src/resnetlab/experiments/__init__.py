"""The paper's experiments, one command each: ``resnetlab reproduce NAME``.

Each experiment trains (or reads back) a set of runs from a shared store
(:mod:`resnetlab.experiments.runs`) and writes a report folder with Markdown, a static HTML
page, charts and the numbers behind them (:mod:`resnetlab.experiments.report`).
"""
