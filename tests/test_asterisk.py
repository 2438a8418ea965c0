"""The Asterisk prompts (espnet_lalora.bin.prep_asterisk) on the installed Debian packages: the
committed exclusion list is what the stated rules give, the rules drop what they say they drop,
no prompt text is in two splits, mini_multi's test_real is the asterisk recipe's test split, the
speaker-shift set is the test prompts by second voices within the duration rule, and bad input is
refused by name."""

import re
from pathlib import Path

import pytest

from espnet_lalora.bin import prep_asterisk
from espnet_lalora.corpus import CorpusError
from espnet_lalora.datadir import read_map
from espnet_lalora.text_norm import normalize

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("asterisk") / "data"
    prep_asterisk.main(["--out", str(out), "--sets", "train,dev,test,shift=test_shift",
                        "--audio_dir", str(out.parent / "audio")])
    return out


def test_committed_exclusions_are_what_the_rules_give(prepared):
    committed = (ROOT / "egs2/asterisk/asr1/local/excluded.tsv").read_text(encoding="utf-8")
    assert (prepared / "excluded.tsv").read_text(encoding="utf-8") == committed, \
        "the rules changed: copy data/excluded.tsv to egs2/asterisk/asr1/local/excluded.tsv"


def test_rules_drop_tones_descriptions_digits_and_spelled_letters(prepared):
    excluded = {}
    for line in (prepared / "excluded.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        lang, prompt, reason = line.split("\t")
        excluded[(lang, prompt)] = reason
    assert excluded[("en", "beep")].startswith("not speech: [")
    assert excluded[("it", "confbridge-join")].startswith("rate:")  # "un suono di beep ..."
    assert excluded[("en", "letters/w")].startswith("rate:")  # "w", said "double-u"
    assert excluded[("en", "pls-try-call-later")].startswith("no audio")
    kept = {}
    for split in ("train", "dev", "test"):
        kept.update(read_map(prepared / split / "text"))
    assert not any(re.search(r"\d|^\[|<|\(", text) for text in kept.values())
    assert len(kept) + len(excluded) > 2500  # five languages, 480-600 prompts each


def test_no_prompt_text_is_in_two_splits(prepared):
    langs = {}
    texts = {}
    for split in ("train", "dev", "test"):
        langs.update(read_map(prepared / split / "utt2lang"))
        for utt, text in read_map(prepared / split / "text").items():
            texts.setdefault((langs[utt], normalize(text, langs[utt])), set()).add(split)
    assert all(len(splits) == 1 for splits in texts.values())
    counts = {s: len(read_map(prepared / s / "text")) for s in ("train", "dev", "test")}
    assert counts["test"] > 400 and counts["dev"] > 150 and counts["train"] > 1400


def test_mini_multi_test_real_is_the_asterisk_test_split(prepared, tmp_path):
    prep_asterisk.main(["--langs", "en,es", "--sets", "test=test_real", "--out", str(tmp_path)])
    real = read_map(tmp_path / "test_real" / "text")
    test = read_map(prepared / "test" / "text")
    assert real == {u: t for u, t in test.items() if u.startswith(("en_", "es_"))}
    # a subset is seeded: the same prompts every time, a part of the full split
    prep_asterisk.main(["--langs", "en", "--sets", "test", "--test_per_lang", "3",
                        "--out", str(tmp_path / "a")])
    prep_asterisk.main(["--langs", "en", "--sets", "test", "--test_per_lang", "3",
                        "--out", str(tmp_path / "b")])
    a, b = (read_map(tmp_path / x / "test" / "text") for x in ("a", "b"))
    assert a == b and len(a) == 3 and set(a) <= set(real)


@pytest.mark.parametrize("args,message", [
    (["--langs", "de"], "--langs: no Asterisk voice for 'de'"),
    (["--corpus_dir", "/nowhere"], "--corpus_dir /nowhere does not exist"),
    (["--corpus_dir", "{tmp}"], "sounds/en_US_f_Allison: not found"),
    (["--test_share", "0.95"], "--dev_share and --test_share must be positive and sum below 1"),
    (["--sets", "eval"], "--sets: unknown split 'eval'"),
])
def test_bad_input_is_refused_by_name(tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exit_:
        prep_asterisk.main(["--langs", "en", *args, "--out", str(tmp_path / "out")]
                           if "--langs" not in args else [*args, "--out", str(tmp_path / "out")])
    assert message in str(exit_.value)
    assert not (tmp_path / "out").exists()  # nothing written


def test_missing_transcripts_say_how_to_install(tmp_path):
    (tmp_path / "usr/share/asterisk/sounds/en_US_f_Allison").mkdir(parents=True)
    with pytest.raises(CorpusError, match="core-sounds-en.txt.gz: not found .*apt-get install "
                                          "asterisk-core-sounds-en asterisk-core-sounds-en-wav"):
        prep_asterisk.prepare(tmp_path, ["en"], 1, 0.1, 0.2)


def test_shift_set_is_test_prompts_by_second_voices(prepared):
    test, shift = (read_map(prepared / s / "text") for s in ("test", "test_shift"))
    spk = read_map(prepared / "test_shift" / "utt2spk")
    langs = read_map(prepared / "test_shift" / "utt2lang")
    assert set(spk.values()) == {"es_es_co", "fr_fr_armelle", "it_it_menardi"}
    assert len(shift) > 100
    test_langs = read_map(prepared / "test" / "utt2lang")
    core = {(test_langs[u], t) for u, t in test.items() if u[:2] in ("es", "fr", "it")}
    assert {(langs[u], t) for u, t in shift.items()} <= core  # the test prompts' texts
    reasons = [line.split("\t")[2] for line in
               (prepared / "excluded.tsv").read_text(encoding="utf-8").splitlines()[1:]
               if line.split("\t")[1].endswith(("(es_co)", "(fr_armelle)", "(it_menardi)"))]
    assert any(r.startswith("shift: duration") for r in reasons)
    assert any(r == "shift: no recording" for r in reasons)
    for r in reasons:  # every duration exclusion lies outside the band, stated in its reason
        if r.startswith("shift: duration"):
            ratio, median = map(float, re.findall(r"(\d+\.\d+)", r))
            assert not 1 / prep_asterisk.SHIFT_BAND <= ratio / median <= prep_asterisk.SHIFT_BAND
    wavs = read_map(prepared / "test_shift" / "wav.scp")  # the GSM voices written as WAV
    assert all(Path(w).suffix == ".wav" and Path(w).is_file() for w in wavs.values())


def test_missing_second_voice_says_how_to_install(tmp_path):
    with pytest.raises(CorpusError, match="second voice of es, asterisk-prompt-es-co.*"
                                          "tools/install.sh"):
        prep_asterisk.prepare(Path("/"), ["es"], 1, 0.1, 0.2, second_root=tmp_path,
                              audio_dir=tmp_path / "audio")
