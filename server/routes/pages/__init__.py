"""The operators' HTML pages: one module per page, each with one ``router``.

``install`` includes every module of this package, so a new page is a new module here and
nothing else to register.
"""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        app.include_router(module.router)
