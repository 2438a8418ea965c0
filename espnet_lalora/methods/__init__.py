"""The methods, one module each, and the one registry that the driver, the exports, the
parameter report, the config check and ESPnet's adapter table ask.

A method module in this folder defines a :class:`~espnet_lalora.methods.base.Method` subclass
(its config schema and hooks) and lists its instances in ``METHODS``; it is found here by that
name, nothing else to edit. See docs/adding_a_method.md.
"""

import importlib
import pkgutil
from typing import Dict, Optional, Tuple

from espnet_lalora.methods.base import AdapterConfigError, Method, MethodConfig

REGISTRY: Dict[str, Method] = {}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    for _method in getattr(_module, "METHODS", []):
        assert _method.name not in REGISTRY, f"two methods named {_method.name}"
        REGISTRY[_method.name] = _method


def get_method(name: str) -> Method:
    if name not in REGISTRY:
        raise AdapterConfigError(f"unknown adapter {name!r}; known methods: "
                                 f"{', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def method_of(config: dict) -> Tuple[Optional[Method], Optional[MethodConfig]]:
    """(method, its parsed adapter_conf) of an ESPnet training config; (None, None) when it
    trains without an adapter."""
    if not config.get("use_adapter", False):
        return None, None
    method = get_method(config.get("adapter", "lora"))
    return method, method.parse_config(config.get("adapter_conf"))


def adapter_table() -> dict:
    """ESPnet's ``create_adapter_fn_table`` entries: ``fn(model, **adapter_conf)``."""
    return {name: method.create_adapter for name, method in REGISTRY.items()}
