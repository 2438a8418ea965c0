"""Training configs: a method's config names a shared base (``base_config: finetune.yaml``) and
adds its few lines. Composed here into the one plain ESPnet config that ``asr_train`` reads
(the driver writes it to ``exp/<asr_exp>/asr_config.yaml``). Mappings merge key by key, the
method's value wins; lists and scalars replace. A config without ``base_config`` is used as is.
"""

from pathlib import Path

import yaml

BASE_KEY = "base_config"


class ConfigError(ValueError):
    pass


def _read(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})")
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of ESPnet options")
    return config


def merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path, _seen=()) -> dict:
    """The composed config of ``path`` (its ``base_config`` chain resolved, relative to each
    file's folder)."""
    path = Path(path)
    config = _read(path)
    base = config.pop(BASE_KEY, None)
    if base is None:
        return config
    base_path = (path.parent / base).resolve()
    if base_path in _seen:
        raise ConfigError(f"{path}: {BASE_KEY}: {base} makes a loop")
    if not base_path.is_file():
        raise ConfigError(f"{path}: {BASE_KEY}: {base} not found (looked for {base_path})")
    return merge(load_config(base_path, _seen + (base_path,)), config)


def composes(path) -> bool:
    return BASE_KEY in _read(Path(path))


def write_config(config: dict, path):
    """Write ``config`` as YAML; an identical file is left untouched (its time stamp too, so
    the driver's fingerprints do not change)."""
    from espnet_lalora.fileio import write_text_atomic

    text = yaml.safe_dump(config, allow_unicode=True, sort_keys=False)
    path = Path(path)
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        write_text_atomic(path, text)


def zero_shot_config(asr_config, token_list, whisper_model=None) -> dict:
    """The ESPnet ``config.yaml`` of the untrained Whisper (the zero-shot baseline): the
    training config as ESPnet itself writes it, adapter removed, input padded to 30 s."""
    from espnet_lalora.quiet import quiet_espnet_imports

    quiet_espnet_imports()
    from espnet2.tasks.asr import ASRTask

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        composed = Path(tmp) / "config.yaml"
        write_config(load_config(asr_config), composed)
        espnet_args = ASRTask.get_parser().parse_args([
            "--config", str(composed), "--token_list", str(token_list),
            "--token_type", "whisper_multilingual", "--bpemodel", "whisper_multilingual"])
    config = vars(espnet_args)
    config.pop("config", None)
    # the same baseline whatever the method: no trace of the adapter (a changed config would
    # make stage 10 decode the zero-shot model again)
    config["use_adapter"] = False
    config["adapter"], config["adapter_conf"] = "lora", {}
    if config.get("encoder") != "whisper" or config.get("decoder") != "whisper":
        raise ConfigError(f"{asr_config}: the zero-shot baseline needs encoder: whisper and "
                          "decoder: whisper")
    config["encoder_conf"]["do_pad_trim"] = True
    if whisper_model:
        config["encoder_conf"]["whisper_model"] = whisper_model
        config["decoder_conf"]["whisper_model"] = whisper_model
    return config


def with_composed_config(argv, folder) -> list:
    """``argv`` with a ``--config`` that names a ``base_config`` replaced by its composed copy,
    written in ``folder`` (asr_train's parser reads one plain YAML file)."""
    argv = list(argv)
    for i, arg in enumerate(argv[:-1]):
        if arg == "--config" and composes(argv[i + 1]):
            write_config(load_config(argv[i + 1]), Path(folder) / "config.yaml")
            argv[i + 1] = str(Path(folder) / "config.yaml")
    return argv


def parse_asr_train_args(argv):
    """(asr_train's parsed options, the words it does not know), its ``--config`` composed
    first: what stage 7 and stage 8 build their model and batches from."""
    import tempfile

    from espnet2.tasks.asr import ASRTask

    with tempfile.TemporaryDirectory() as tmp:
        return ASRTask.get_parser().parse_known_args(with_composed_config(argv, tmp))
