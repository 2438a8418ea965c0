"""The out-of-grammar test sentences of the embedded recipe (egs2/mini_multi/asr1/local/
free_sentences.py): well formed for their language and for espeak-ng, and really outside the
grammar of local/synth_corpus.py (no grammar sentence, almost no shared word 3-grams)."""

import math
import re
import subprocess
import sys
import wave
from pathlib import Path

import pytest

LOCAL = Path(__file__).resolve().parents[1] / "egs2/mini_multi/asr1/local"
sys.path.insert(0, str(LOCAL))
import free_sentences  # noqa: E402
import synth_corpus  # noqa: E402

sys.path.remove(str(LOCAL))

FREE = free_sentences.FREE_SENTENCES
LANGS = ["ja", "ko", "en", "es"]
PER_LANG = 40

# Measured share of the free set's n-grams (ja: character 4-grams, others: word 3-grams) also
# found in a grammar sentence, distinct n-grams / all occurrences:
#   ja 0/591 and 0/610, ko 0/114 and 0/114, en 0/201 and 0/201, es 0/202 and 0/203: 0% each.
# (Word unigrams, for comparison: only function words such as the, my, en, la, mi and a few
# content words such as week, mañana, cocina are shared; ko shares 오늘, 아침, 제.)
MAX_NGRAM_SHARE = 0.05

WRITTEN = {
    "ja": re.compile(r"[\u3041-\u3096\u30a1-\u30faー]+[。？]"),  # hiragana, katakana, ー
    "ko": re.compile(r"[\uac00-\ud7a3]+( [\uac00-\ud7a3]+)*[.?]"),  # Hangul syllables
    "en": re.compile(r"[A-Z][A-Za-z]*( [A-Za-z]+)*[.?!]"),
    "es": re.compile(r"¿?[A-ZÁÉÍÓÚÑ][A-Za-zÁÉÍÓÚÜÑáéíóúüñ]*( [A-Za-zÁÉÍÓÚÜÑáéíóúüñ]+)*[.?!]"),
}


def grammar_sentences(lang):
    """Every (written, spoken) sentence the grammar can produce, rendered by synth_corpus."""
    seen, novel = synth_corpus.sentences(lang, seed=1)
    every = list(seen) + list(novel)
    g = synth_corpus.GRAMMARS[lang]
    assert len(every) == math.prod(len(g[slot]) for slot in g["order"])
    return every


def ngrams(lang, written):
    """ja: character 4-grams of the text without punctuation; others: lower-cased word 3-grams."""
    text = re.sub(r"[。？.?!¿¡,]", "", written)
    if lang == "ja":
        return [text[i:i + 4] for i in range(len(text) - 3)]
    words = text.lower().split()
    return [tuple(words[i:i + 3]) for i in range(len(words) - 2)]


def ngram_share(lang):
    """(distinct shared, distinct, shared occurrences, occurrences) of the free set's n-grams."""
    grammar = {n for w, _ in grammar_sentences(lang) for n in ngrams(lang, w)}
    free = [n for w, _ in FREE[lang] for n in ngrams(lang, w)]
    return (len(set(free) & grammar), len(set(free)), sum(n in grammar for n in free), len(free))


def test_languages_and_counts():
    assert sorted(FREE) == sorted(LANGS) == sorted(synth_corpus.GRAMMARS)
    for lang in LANGS:
        assert len(FREE[lang]) == PER_LANG, lang
        assert len({w for w, _ in FREE[lang]}) == PER_LANG, f"{lang}: duplicate written"
        assert len({s for _, s in FREE[lang]}) == PER_LANG, f"{lang}: duplicate spoken"


@pytest.mark.parametrize("lang", LANGS)
def test_script_and_form(lang):
    for written, spoken in FREE[lang]:
        assert isinstance(written, str) and isinstance(spoken, str)
        assert not any(c.isdigit() for c in written + spoken), (lang, written)
        assert WRITTEN[lang].fullmatch(written), (lang, written)
        if lang == "ja":
            assert spoken.replace(" ", "") == written, written
            assert "  " not in spoken and spoken == spoken.strip(), spoken
            assert 8 <= len(written) - 1 <= 30, (written, len(written) - 1)
            # espeak-ng reads the particles は and へ as "ha" and "he": no phrase may end in them.
            phrases = spoken[:-1].split(" ")
            assert not any(p.endswith(("は", "へ")) for p in phrases), spoken
        else:
            assert spoken == written, (lang, written)
            assert 3 <= len(written.split()) <= 14, (lang, written)
        if lang == "es":
            # A Spanish question opens with ¿ and closes with ?, a statement has neither.
            assert written.startswith("¿") == written.endswith("?"), written
            assert "¿" not in written[1:], written


@pytest.mark.parametrize("lang", LANGS)
def test_no_grammar_sentence(lang):
    grammar = grammar_sentences(lang)
    written = {w for w, _ in grammar}
    spoken = {s for _, s in grammar}
    assert not [w for w, s in FREE[lang] if w in written or s in spoken], lang


@pytest.mark.parametrize("lang", LANGS)
def test_few_shared_ngrams(lang):
    shared, distinct, shared_occ, occ = ngram_share(lang)
    print(f"{lang}: {shared}/{distinct} distinct, {shared_occ}/{occ} occurrences shared")
    assert distinct > 50 and occ >= distinct
    assert shared / distinct < MAX_NGRAM_SHARE, (lang, shared, distinct)
    assert shared_occ / occ < MAX_NGRAM_SHARE, (lang, shared_occ, occ)


@pytest.mark.parametrize("lang", LANGS)
def test_espeak_says_them(lang, tmp_path):
    # Two sentences per language (a question and the longest one), to keep the CPU use low.
    questions = [s for w, s in FREE[lang] if w.endswith(("?", "？"))]
    longest = max((s for _, s in FREE[lang]), key=len)
    voice = synth_corpus.GRAMMARS[lang]["voice"]
    for index, spoken in enumerate([questions[0], longest]):
        path = tmp_path / f"{lang}{index}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), spoken], check=True,
                       capture_output=True, timeout=60)
        with wave.open(str(path)) as audio:
            seconds = audio.getnframes() / audio.getframerate()
        assert seconds > 0.5, (lang, spoken, seconds)
