"""One module per task operator or variant. Importing this package imports every module in it,
and each registers its class (@register_operator, @register_variant): adding a task or a
variant is adding a file here, and no other file changes."""

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):  # sorted: the same order everywhere
    importlib.import_module(f"{__name__}.{_module}")
