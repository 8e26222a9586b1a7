from __future__ import annotations

import importlib
import pkgutil

import garrison.engine.unpack as unpack_package
from garrison.engine.filetype import FileType
from garrison.engine.unpack import registry


def test_every_unpacker_module_is_in_the_lazy_table() -> None:
    for module in pkgutil.iter_modules(unpack_package.__path__):
        if module.name != "registry":
            importlib.import_module(f"garrison.engine.unpack.{module.name}")
    registered = {file_type: func.__module__.rsplit(".", 1)[1] for file_type, func in registry._REGISTRY.items()}
    assert registered == registry.MODULES


def test_types_without_an_unpacker() -> None:
    assert registry.unpacker_for(FileType.PE) is None
    assert registry.unpacker_for(FileType.PNG) is None
