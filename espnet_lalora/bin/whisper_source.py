"""Whisper weights given as a path, made loadable by name (what ``--whisper_model PATH`` runs):

    python -m espnet_lalora.bin.whisper_source PATH

PATH is an openai-whisper checkpoint (.pt), a Hugging Face transformers folder (config.json +
model.safetensors, e.g. a local copy of openai/whisper-large-v3) or a faster-whisper / CTranslate2
folder (model.bin, config.json, vocabulary). A folder is converted once to an openai-whisper
checkpoint in the espnet-lalora cache. Prints the name that ``whisper.load_model`` and ESPnet's
``whisper_model:`` now resolve to it (``<folder name>-<content hash>``).
"""

import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.exit(__doc__)
    from espnet_lalora.whisper_weights import WhisperSourceError, register_source

    try:
        name = register_source(argv[0], log=lambda m: print(f"[whisper_source] {m}",
                                                            file=sys.stderr))
    except WhisperSourceError as e:
        sys.exit(f"error: --whisper_model {e}")
    print(name)


if __name__ == "__main__":
    main()
