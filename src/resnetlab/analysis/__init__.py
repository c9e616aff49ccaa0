"""Analysis: counting (parameters, multiply-adds), layer tables, formulas, comparisons, charts,
architecture diagrams; each shows itself as HTML or SVG in a notebook."""

from resnetlab.analysis.compare import CompareRow, Comparison, compare
from resnetlab.analysis.counting import ShapeError, count_params
from resnetlab.analysis.diagram import Diagram, block_diagram, diagram
from resnetlab.analysis.formulas import (
    FormulaTable,
    ParamFormula,
    formulas,
    param_formula,
    total_formula,
)
from resnetlab.analysis.notebook import MetricsTable, WeightsTable, weights_table
from resnetlab.analysis.summary import Summary, summarize

__all__ = [
    "CompareRow",
    "Comparison",
    "Diagram",
    "FormulaTable",
    "MetricsTable",
    "ParamFormula",
    "ShapeError",
    "Summary",
    "WeightsTable",
    "block_diagram",
    "compare",
    "count_params",
    "diagram",
    "formulas",
    "param_formula",
    "summarize",
    "total_formula",
    "weights_table",
]
