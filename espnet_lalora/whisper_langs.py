"""Whisper's language codes (``<|ja|>``, ``<|ko|>``, ...)."""

import ast
import functools
import importlib.machinery
from pathlib import Path


@functools.lru_cache(maxsize=None)
def whisper_languages():
    """``{code: name}``, read from openai-whisper's ``tokenizer.py`` as a literal: importing the
    ``whisper`` package pulls in torch (3-4 s of CPU), too much for the light data tools of
    stages 1 and 4. Falls back to the import if the file's layout ever changes. The package is
    located with ``PathFinder``, without the import hook that patches ``whisper.load_model``
    (espnet_lalora._whisper_hook): nothing is imported, so there is nothing to patch."""
    try:
        spec = importlib.machinery.PathFinder.find_spec("whisper")
        tokenizer = Path(spec.origin).parent / "tokenizer.py"
        for node in ast.parse(tokenizer.read_text(encoding="utf-8")).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and getattr(node.targets[0], "id", None) == "LANGUAGES"):
                return ast.literal_eval(node.value)
    except (AttributeError, OSError, SyntaxError, TypeError, ValueError):
        pass
    from whisper.tokenizer import LANGUAGES

    return LANGUAGES


def check_language(code: str, where: str):
    if code not in whisper_languages():
        raise ValueError(f"{where}: language {code!r} is not a Whisper language code; use an "
                         "ISO 639-1 code Whisper knows, e.g. ja, ko, en, es, zh")
