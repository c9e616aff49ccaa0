"""The formula behind every parameter count, as a by-hand count derives them:
``conv_params = in_ch × out_ch × k_w × k_h (+ out_ch for a bias)``.

>>> from torch import nn

from resnetlab.analysis.html import html_table
>>> param_formula("conv1", nn.Conv2d(3, 64, 7, bias=False)).text
'3×64×7×7 = 9,408'
>>> param_formula("stem", nn.Conv2d(3, 64, 7)).text
'3×64×7×7 + 64 = 9,472'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from resnetlab.analysis.html import html_table


@dataclass(frozen=True)
class ParamFormula:
    """How one layer's own parameters are counted."""

    name: str  # dotted path in the model
    type: str
    terms: tuple[str, ...]  # e.g. ("3×64×7×7", "64")
    count: int

    @property
    def expression(self) -> str:
        return " + ".join(self.terms)

    @property
    def text(self) -> str:
        return f"{self.expression} = {self.count:,}"

    def _repr_html_(self) -> str:
        return FormulaTable([self])._repr_html_()


class FormulaTable(list[ParamFormula]):
    """The list :func:`~resnetlab.analysis.formulas.formulas` returns, shown as a table
    (layer, type, formula, parameters, and the total) in a notebook."""

    @property
    def total(self) -> int:
        return sum(f.count for f in self)

    def _repr_html_(self) -> str:
        rows = [[f.name, f.type, f.expression, f"{f.count:,}"] for f in self]
        rows.append(["total", "", "", f"{self.total:,}"])
        return html_table(("Layer", "Type", "Formula", "Params"), rows, numeric=(3,))


def _dims(*values: int) -> str:
    return "×".join(str(v) for v in values)


def param_formula(name: str, module: nn.Module) -> ParamFormula | None:
    """The formula for a module's *own* parameters (not its children's), or ``None`` if
    it has none. Conv: ``in×out×k_h×k_w`` (``(in/groups)×…`` when grouped) + bias;
    Linear: ``in×out`` + bias; BatchNorm: ``C (γ) + C (β)``; anything else: the shape of
    each parameter."""
    own = dict(module.named_parameters(recurse=False))
    if not own:
        return None
    count = sum(p.numel() for p in own.values())
    terms: list[str]
    if isinstance(module, nn.Conv2d):
        k_h, k_w = module.kernel_size
        cin = module.in_channels
        cin_s = str(cin) if module.groups == 1 else f"({cin}/{module.groups})"
        terms = [f"{cin_s}×{_dims(module.out_channels, k_h, k_w)}"]
        if module.bias is not None:
            terms.append(str(module.out_channels))
    elif isinstance(module, nn.Linear):
        terms = [_dims(module.in_features, module.out_features)]
        if module.bias is not None:
            terms.append(str(module.out_features))
    elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
        terms = [f"{module.num_features} (γ)", f"{module.num_features} (β)"]
    else:
        terms = [_dims(*p.shape) if p.dim() else "1" for p in own.values()]
    assert count == sum(math.prod(p.shape) for p in own.values())
    return ParamFormula(name, type(module).__name__, tuple(terms), count)


def formulas(model: nn.Module) -> FormulaTable:
    """One formula for every module that owns parameters, in registration order (a list
    that shows itself as a table in a notebook)."""
    out = FormulaTable()
    for name, module in model.named_modules():
        f = param_formula(name, module)
        if f is not None:
            out.append(f)
    return out


def total_formula(model: nn.Module) -> str:
    """The whole count as one sum, as a by-hand count writes it:
    ``(64×64×3×3 + 64) + (64×64×3×3 + 64) = 73,856``."""
    parts = formulas(model)
    total = sum(f.count for f in parts)
    terms = [f"({f.expression})" if len(f.terms) > 1 else f.expression for f in parts]
    return f"{' + '.join(terms)} = {total:,}"
