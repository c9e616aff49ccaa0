"""At home in Jupyter: the tables a notebook asks for that are plain lists and dicts
elsewhere (the published weights catalogue, an evaluation's metrics), with ``_repr_html_``.
Summaries, comparisons, formulas and diagrams carry their own reprs.

Everything is escaped; nothing here runs code or loads anything from the network.
"""

from __future__ import annotations

from resnetlab.analysis.html import html_table
from resnetlab.interop.fact_sheet import PublishedWeights


class WeightsTable(list[PublishedWeights]):
    """Catalogue entries (``weights_table("resnet50*")``), one row each in a notebook."""

    def _repr_html_(self) -> str:
        rows = [
            [
                w.name,
                w.model,
                f"{w.num_params:,}",
                w.published(),
                w.preprocessing.describe(),
                w.licence,
            ]
            for w in self
        ]
        head = ("Name", "Model", "Params", "Published", "Preprocessing", "Licence")
        return html_table(head, rows, caption="Published weights", numeric=(2,))


def weights_table(pattern: str = "*") -> WeightsTable:
    """The published weights catalogue (shell-style ``pattern`` over names and models), as
    ``resnetlab weights`` lists it, displayed as a table in a notebook."""
    from resnetlab.interop.weights import list_weights

    return WeightsTable(list_weights(pattern))


class MetricsTable(dict[str, float]):
    """An evaluation's metrics (``{"top1": 0.91, …}``, as ``evaluate`` returns them),
    shown as a table in a notebook: ``MetricsTable(metrics)``."""

    def _repr_html_(self) -> str:
        rows = [[k, f"{v:.4f}" if isinstance(v, float) else str(v)] for k, v in self.items()]
        return html_table(("Metric", "Value"), rows, caption="Evaluation", numeric=(1,))
