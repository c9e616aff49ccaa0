"""The paper's experiments, one command each: ``resnetlab reproduce NAME``.

Each experiment is one module declaring an :class:`~resnetlab.experiments.base.Experiment`
(its name, default depths, seeds and options, the runs it needs and its report), listed in
:mod:`resnetlab.experiments.registry`. The runs come from a shared store
(:mod:`resnetlab.experiments.runs`); the report folder holds Markdown, a static HTML page,
charts and the numbers behind them (:mod:`resnetlab.experiments.report`).
"""
