"""Analysis: counting (parameters, multiply-adds), layer tables, formulas, comparisons, charts."""

from resnetlab.analysis.compare import CompareRow, Comparison, compare
from resnetlab.analysis.counting import ShapeError, count_params
from resnetlab.analysis.formulas import ParamFormula, formulas, param_formula, total_formula
from resnetlab.analysis.summary import Summary, summarize

__all__ = [
    "CompareRow",
    "Comparison",
    "ParamFormula",
    "ShapeError",
    "Summary",
    "compare",
    "count_params",
    "formulas",
    "param_formula",
    "summarize",
    "total_formula",
]
