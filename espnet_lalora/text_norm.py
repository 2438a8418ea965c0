"""The one text normalizer of scoring, applied to reference and hypothesis alike (stage 11 keeps
both texts: the raw ones in ``text`` and the decode dir, the normalized ones in ``text.norm.*``).

For every language:

1. Unicode NFKC: full-width Latin letters and digits become half-width (``Ｈｅｌｌｏ１`` ->
   ``Hello1``), half-width katakana becomes full-width (``ｶﾀｶﾅ`` -> ``カタカナ``), the ideographic
   space becomes a space, compatibility forms are unified.
2. Case folding (``Hello`` = ``hello``; German ``ß`` = ``ss``).
3. Punctuation and symbols (Unicode categories P* and S*) become spaces: ``、。「」・!?,.~`` are not
   scored. An apostrophe between two letters stays (``don't``, ``l'eau`` are one word), with
   ``’`` written as ``'``.
4. Runs of whitespace become one space.

Per language (``lang``, the utterance's ISO 639-1 code):

* ``tr``, ``az``: Turkish casing, ``I`` -> ``ı`` and ``İ`` -> ``i`` (plain case folding would
  turn ``I`` into ``i`` and ``İ`` into ``i`` + a combining dot).
* ``ja``, ``zh``, ``th``, ``lo``, ``my``, ``km`` (no spaces between words): read the CER; their WER
  splits on whatever spaces the texts have, so it is close to a sentence error rate.
* ``ko``: words (eojeol) are separated by spaces, but spacing varies between writers; the CER
  ignores spaces, so a spacing difference is no error, while the WER counts it (as Zeroth-Korean's
  published WERs do).

Character error rate counts every character except spaces, in every language. Numbers are not
spelled out and scripts are not converted (kanji vs kana, simplified vs traditional): a
hypothesis that writes them differently from the reference is scored as wrong.
"""

import unicodedata

_TURKIC = {"tr", "az"}


def _casefold(text: str, lang: str) -> str:
    if lang in _TURKIC:
        text = text.replace("I", "ı").replace("İ", "i")
    return text.casefold()


def normalize(text: str, lang: str = "") -> str:
    text = _casefold(unicodedata.normalize("NFKC", text), lang).replace("\u2019", "'")
    out = []
    for i, ch in enumerate(text):
        if unicodedata.category(ch)[0] in "PS":
            between_letters = (0 < i < len(text) - 1 and text[i - 1].isalpha()
                               and text[i + 1].isalpha())
            ch = ch if ch == "'" and between_letters else " "
        out.append(ch)
    return " ".join("".join(out).split())


def words(text: str, lang: str = ""):
    return normalize(text, lang).split()


def characters(text: str, lang: str = ""):
    return [ch for ch in normalize(text, lang) if not ch.isspace()]
