"""Check an ESPnet training config before any stage spends time on it: the file parses, the
adapter is a known method, its options are valid (rank >= 1, ...). ``--print_method`` prints the
method name (``full`` when no adapter is used)."""

import argparse
import sys
from pathlib import Path

import yaml

from espnet_lalora.la_lora import DEFAULT_BUDGET, SelectionError, check_budget
from espnet_lalora.methods import ADAPTERS, check_adapter_conf, AdapterConfigError


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--asr_config", required=True, type=Path)
    parser.add_argument("--print_method", action="store_true")
    args = parser.parse_args(argv)
    where = f"--asr_config {args.asr_config}"
    if not args.asr_config.is_file():
        sys.exit(f"error: {where}: file not found")
    try:
        config = yaml.safe_load(args.asr_config.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        sys.exit(f"error: {where}: not valid YAML ({e})")
    if not isinstance(config, dict):
        sys.exit(f"error: {where}: expected a mapping of ESPnet options")
    if not config.get("use_adapter", False):
        method = "full"
    else:
        method = config.get("adapter", "lora")
        if method not in ADAPTERS:
            sys.exit(f"error: {where}: unknown adapter {method!r}; known methods: "
                     f"{', '.join(sorted(ADAPTERS))}")
        conf = config.get("adapter_conf") or {}
        try:
            check_adapter_conf(method, conf)
            if method == "la_lora":
                check_budget(conf.get("budget", DEFAULT_BUDGET), conf.get("select_by", "module"))
        except (AdapterConfigError, SelectionError) as e:
            sys.exit(f"error: {where}: {e}")
    if args.print_method:
        print(method)


if __name__ == "__main__":
    main()
