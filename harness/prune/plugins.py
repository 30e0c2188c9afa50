"""Where pruners come from: the built-in packages (`laasp`, `baselines`) and user plugins
(``--plugin FILE_OR_MODULE``, ``plugins:`` in a search space), each imported once per process."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Iterable

from harness.errors import UserError

BUILTIN_MODULES = ("laasp.schedule", "baselines")


def load_builtin_pruners() -> None:
    for name in BUILTIN_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside the module: show it
                raise


def load_plugin(spec: str) -> None:
    """Import a user's pruner registrations from a file path or an importable module name."""
    path = Path(spec)
    if spec.endswith(".py") or path.exists():
        if not path.is_file():
            raise UserError(f"--plugin {spec}: file not found; pass a .py file or an importable module name")
        module_name = f"laasp_plugin_{abs(hash(str(path.resolve())))}"
        try:
            _exec_file(module_name, path)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"--plugin {spec} failed to import: {type(exc).__name__}: {exc}") from exc
        return
    try:
        importlib.import_module(spec)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"--plugin {spec} failed to import: {type(exc).__name__}: {exc}") from exc


_PLUGIN_FILES: dict[str, str] = {}  # module name -> file of every plugin file imported here


def _exec_file(module_name: str, path: Path) -> None:
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    loader_spec.loader.exec_module(module)
    _PLUGIN_FILES[module_name] = str(path.resolve())


def plugin_files() -> dict[str, str]:
    """The plugin files this process imported, by module name (a data-parallel run's other
    processes import them under the same names, so pickled pruner configs resolve there)."""
    return dict(_PLUGIN_FILES)


def load_plugin_files(files: dict[str, str]) -> None:
    """Import `plugin_files` of another process under their names (the built-in pruners too)."""
    load_builtin_pruners()
    for module_name, path in files.items():
        if module_name not in sys.modules:
            _exec_file(module_name, Path(path))


_LOADED_PLUGINS: set[str] = set()


def ensure_plugins(plugins: Iterable[str]) -> None:
    """Import plugin files once per process (a second import would register its pruners twice)."""
    load_builtin_pruners()
    for spec in plugins:
        if spec not in _LOADED_PLUGINS:
            load_plugin(spec)
            _LOADED_PLUGINS.add(spec)
