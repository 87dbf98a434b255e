"""Capabilities that a model family declares and each instance may refine, without either one lying.

Generic code asks a model class what its family does (``Model.likelihood_kind``: may it be trained by
Hessian-free? which trainer options can its recipe set?) and asks a model what *it* does
(``model.likelihood_kind``: what does this model's default ``log_prob`` return?). For most models the
two answers agree and a plain class attribute serves both. For a few they differ with the
configuration: a TRBM small enough to enumerate scores by importance sampling with exact partitions
(a ``bound``) where a large one uses AIS (an ``estimate``); ``preset=thesis`` brings its own
training recipe.

:class:`instance_capability` declares such an attribute as a read-only, per-instance property whose
class-level value is the family's (what a model of default size and configuration has)::

    @instance_capability("estimate")
    def likelihood_kind(self) -> str:
        return "bound" if self.exact_by_default else "estimate"

``TRBM.likelihood_kind == "estimate"``; ``tiny_trbm.likelihood_kind == "bound"``; assigning to it
raises, so no instance can overwrite the class's answer.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

__all__ = ["instance_capability"]

T = TypeVar("T")


class instance_capability(Generic[T]):  # noqa: N801 - used as a decorator, like ``property``
    """A read-only attribute: the family's value on the class, ``compute(model)`` on an instance.

    Args:
        family: what ``Model.attr`` returns (document it as the family's, at default settings).

    Decorate the method that computes the instance's value; its docstring becomes the attribute's.
    """

    def __init__(self, family: T) -> None:
        self.family = family
        self.compute: Callable[[Any], T] | None = None
        self.name = ""

    def __call__(self, compute: Callable[[Any], T]) -> instance_capability[T]:
        self.compute = compute
        self.__doc__ = compute.__doc__
        return self

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, model: Any, owner: type | None = None) -> T:
        if model is None:
            return self.family
        return self.compute(model)

    def __set__(self, model: Any, value: Any) -> None:
        raise AttributeError(f"{type(model).__name__}.{self.name} follows from the model's configuration "
                             "and cannot be set on an instance")
