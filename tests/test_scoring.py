"""Stage 11: the normalizer, and sclite's error counts against jiwer's on the same units."""

import subprocess
import sys

import jiwer
import pytest

from espnet_lalora.scoring import parse_result
from espnet_lalora.text_norm import characters, normalize, words

REFS = {
    "ja_s1-u1": ("ja", "きょうは そらが あおい。"),
    "ja_s1-u2": ("ja", "ともだちが えきで てがみを かきました。"),
    "ko_s1-u1": ("ko", "오늘은 날씨가 맑습니다."),
    "ko_s1-u2": ("ko", "어제 친구가 책을 읽었습니다."),
    "en_s1-u1": ("en", "The children sang a song in the park."),
    "en_s1-u2": ("en", "Last night my sister washed the car."),
}
HYPS = {
    "ja_s1-u1": "キョウは空があおい",          # script differs: substitutions
    "ja_s1-u2": "ともだちがえきでてがみをかきました",  # spacing only: no error
    "ko_s1-u1": "오늘은 날씨가맑습니다 정말",        # spacing + an inserted word
    "ko_s1-u2": "",                                # nothing decoded: all deletions
    "en_s1-u1": "the children sang song in the the park",
    "en_s1-u2": "LAST NIGHT, my sister washed the car!",
}


def test_normalizer():
    assert normalize("Ｈｅｌｌｏ，　ＷＯＲＬＤ！") == "hello world"
    assert normalize("ｶﾀｶﾅ、です。") == "カタカナ です"
    assert characters("오늘은 날씨가") == list("오늘은날씨가")
    assert words("Last night, my sister!") == ["last", "night", "my", "sister"]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    (root / "ref").write_text("".join(f"{u} {t}\n" for u, (_, t) in REFS.items()), "utf-8")
    (root / "hyp").write_text("".join(f"{u} {t}\n" for u, t in HYPS.items()), "utf-8")
    (root / "utt2lang").write_text("".join(f"{u} {l}\n" for u, (l, _) in REFS.items()))
    subprocess.run([sys.executable, "-m", "espnet_lalora.bin.score", "--ref", str(root / "ref"),
                    "--hyp", str(root / "hyp"), "--utt2lang", str(root / "utt2lang"),
                    "--out", str(root / "out")], check=True, capture_output=True)
    return root / "out"


@pytest.mark.parametrize("metric,split", [("cer", characters), ("wer", words)])
@pytest.mark.parametrize("lang", ["", "ja", "ko", "en"])
def test_sclite_counts_agree_with_jiwer(scored, metric, split, lang):
    utts = [u for u in REFS if not lang or REFS[u][0] == lang]
    counts = parse_result(scored / f"score_{metric}" / lang / "result.txt")["count"]
    refs = [" ".join(split(REFS[u][1])) for u in utts]
    hyps = [" ".join(split(HYPS[u])) for u in utts]
    # jiwer cannot take an empty reference but can take an empty hypothesis.
    out = jiwer.process_words(refs, hyps)
    assert counts["Snt"] == len(utts)
    assert counts["Wrd"] == sum(len(r.split()) for r in refs)
    assert counts["Err"] == out.substitutions + out.deletions + out.insertions
    assert counts["Del"] >= (len(refs[utts.index("ko_s1-u2")].split()) if "ko_s1-u2" in utts else 0)


def test_spacing_alone_is_no_character_error(scored):
    counts = parse_result(scored / "score_cer" / "ja" / "result.txt")["count"]
    ja_u1 = len(characters(REFS["ja_s1-u1"][1]))
    assert counts["Err"] <= ja_u1  # every error comes from u1; u2 differs only in spaces


def test_hypotheses_without_reference_are_an_error(tmp_path):
    (tmp_path / "ref").write_text("a-1 hello\n")
    (tmp_path / "hyp").write_text("a-1 hello\nb-2 extra\n")
    result = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.score", "--ref",
                             str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp"), "--lang", "en",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode != 0 and "b-2" in result.stderr
