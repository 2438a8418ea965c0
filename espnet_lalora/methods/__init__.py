"""The methods, one module each, and the one registry that the driver, the exports, the
parameter report, the config check and ESPnet's adapter table ask.

A method module defines a :class:`~espnet_lalora.methods.base.Method` subclass (its config
schema and hooks) and lists its instances in ``METHODS``; import it and add it to ``MODULES``.
See docs/adding_a_method.md.
"""

from typing import Dict, Optional, Tuple

from espnet_lalora.methods import bitfit, la_lora, lora
from espnet_lalora.methods.base import AdapterConfigError, Method, MethodConfig

MODULES = (lora, la_lora, bitfit)
REGISTRY: Dict[str, Method] = {}
for _module in MODULES:
    for _method in _module.METHODS:
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
