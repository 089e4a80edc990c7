"""The environment definitions: one module per environment, each registering its Gymnasium id.

A module here holds a frozen ``Params`` dataclass (independent constants, SI units), a frozen
``Problem`` dataclass of pure functions of an explicit state, its docstring (the equations,
the state and action tables with units, cost, start, end) and one
:func:`~diffenvs.core.register_problem` line. Importing this package imports every module in
it, so adding an environment is adding its module.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
