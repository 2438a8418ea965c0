"""Whisper's language codes (``<|ja|>``, ``<|ko|>``, ...)."""


def whisper_languages():
    from whisper.tokenizer import LANGUAGES

    return LANGUAGES


def check_language(code: str, where: str):
    if code not in whisper_languages():
        raise ValueError(f"{where}: language {code!r} is not a Whisper language code; use an "
                         "ISO 639-1 code Whisper knows, e.g. ja, ko, en, es, zh")
