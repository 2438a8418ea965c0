"""The one text normalizer of scoring, applied to reference and hypothesis alike.

1. Unicode NFKC: full-width Latin letters and digits become half-width, half-width katakana
   becomes full-width, compatibility forms are unified.
2. Case folding (``Hello`` = ``hello``).
3. Punctuation and symbols (Unicode categories P* and S*) become spaces: ``、。!?,.`` and the like
   are not scored.
4. Runs of whitespace become one space.

Word error rate splits on spaces (Korean: spacing units, eojeol; Japanese has none, so its WER is
a sentence error rate: read its CER). Character error rate counts every character except spaces,
in every language, so spacing differences (frequent in Korean) are not counted as errors.
"""

import unicodedata


def normalize(text: str, lang: str = "") -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    return " ".join(text.split())


def words(text: str, lang: str = ""):
    return normalize(text, lang).split()


def characters(text: str, lang: str = ""):
    return [ch for ch in normalize(text, lang) if not ch.isspace()]
