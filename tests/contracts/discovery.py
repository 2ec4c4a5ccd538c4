"""How the contract suites find the implementations they check: by walking subclasses and reading ``__all__``."""

from __future__ import annotations

import inspect
from types import ModuleType


def concrete_subclasses(base: type) -> set[type]:
    """Every non-abstract subclass of ``base``, at any depth."""
    found: set[type] = set()
    stack = list(base.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if not inspect.isabstract(cls):
            found.add(cls)
    return found


def exported(base: type, *modules: ModuleType) -> set[type]:
    """The concrete subclasses of ``base`` (or ``base`` itself) listed in the ``__all__`` of ``modules``."""
    return {obj for module in modules for obj in (getattr(module, name) for name in module.__all__)
            if inspect.isclass(obj) and issubclass(obj, base) and not inspect.isabstract(obj)}


def library_implementations(base: type, package: ModuleType, *modules: ModuleType) -> set[type]:
    """What a contract suite runs: the concrete ``base`` classes ``package`` or ``modules`` export, and every
    concrete subclass defined inside ``ebmlib`` (exported or not; subclasses defined in tests are left out)."""
    defined = {cls for cls in concrete_subclasses(base) if cls.__module__.startswith("ebmlib.")}
    return exported(base, package, *modules) | defined
