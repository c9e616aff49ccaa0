"""Every experiment ``resnetlab reproduce`` offers, in one list: ``get_experiment(name)``,
``list_experiments()``.

As in the model registry (:mod:`resnetlab.models.registry`), a name is registered once and
an unknown name raises :class:`UnknownExperimentError` naming the closest ones.
"""

from __future__ import annotations

import difflib

from resnetlab.errors import InvalidValueError
from resnetlab.experiments import cifar_table, degradation, landscape, lesion, responses, shortcuts
from resnetlab.experiments.base import Experiment


class UnknownExperimentError(InvalidValueError):
    """Raised for an experiment name that is not registered."""


_REGISTRY: dict[str, Experiment] = {}


def register_experiment(experiment: Experiment) -> Experiment:
    """Register ``experiment`` under its name; a name can be registered only once."""
    if experiment.name in _REGISTRY:
        raise ValueError(f"experiment {experiment.name!r} is already registered")
    _REGISTRY[experiment.name] = experiment
    return experiment


def get_experiment(name: str) -> Experiment:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownExperimentError(f"unknown experiment {name!r}{hint}") from None


def list_experiments() -> list[str]:
    """The registered names, in the order ``resnetlab reproduce --help`` lists them."""
    return list(_REGISTRY)


def experiments() -> list[Experiment]:
    return list(_REGISTRY.values())


for _module in (degradation, cifar_table, responses, shortcuts, landscape, lesion):
    register_experiment(_module.EXPERIMENT)
