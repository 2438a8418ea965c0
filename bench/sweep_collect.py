"""A finished run's outputs (stage 11's sclite alignments, stage 9's params.yaml, the training's
resources) turned into its record, in the utterance order of the size's test_sets.json."""

import sys
from pathlib import Path

import yaml

from espnet_lalora.significance import sclite_utterances
from sweep_records import (DECODE_SUFFIX, GREEDY_TAG, OTHER_DECODINGS, read_json, run_tag,
                           write_json)

ZERO_SHOT_EXP = "asr_zero_shot_whisper_base"


def decode_dir(work: Path, exp: str, suffix: str = "", tag: str = "decode") -> Path:
    """Stage 10's output for one decoding of an experiment (suffix: the method's decode mode;
    tag: the decoding config's name)."""
    return work / "exp" / exp / f"decode_{tag}{suffix}"


def scored(work: Path, exp: str, test: str, suffix: str = "", tag: str = "decode") -> dict:
    """{utterance: (errors, reference length)} of one test set from stage 11's sclite
    alignments, under the data dir's own ids (sclite writes them in lower case)."""
    result = decode_dir(work, exp, suffix, tag) / test / "score_cer" / "result.txt"
    if not result.is_file():
        raise FileNotFoundError(f"{result}: missing (did stage 11 run?)")
    ids = {}
    for line in (work / "data" / test / "utt2lang").read_text().splitlines():
        utt = line.split()[0]
        if utt.lower() in ids:
            sys.exit(f"error: {work}/data/{test}: ids {ids[utt.lower()]} and {utt} differ only "
                     f"in case, which sclite does not tell apart")
        ids[utt.lower()] = utt
    return {ids[u]: counts for u, counts in sclite_utterances(result).items()}


def collect(work: Path, exp: str, sets, suffix: str = "", tag: str = "decode") -> dict:
    """Per test set, {utterance: errors} from stage 11's sclite alignments."""
    return {test: {u: e for u, (e, _) in scored(work, exp, test, suffix, tag).items()}
            for test in sets}


def test_set_record(work: Path, exp: str, test: str) -> dict:
    """One test set: utterances in order, their reference lengths, languages and sentences (the
    language and reference text: the unit the statistics resample, since some sets read
    another's sentences again)."""
    counts = scored(work, exp, test)
    data = work / "data" / test
    langs = dict(line.split() for line in (data / "utt2lang").read_text().splitlines())
    texts = dict(line.split(maxsplit=1) if " " in line else (line, "")
                 for line in (data / "text").read_text(encoding="utf-8").splitlines())
    utts = sorted(counts)
    return dict(utts=utts, lengths=[counts[u][1] for u in utts], langs=[langs[u] for u in utts],
                sentences=[f"{langs[u]}:{texts[u].strip()}" for u in utts])


def update_test_sets(rec, work: Path, size: str, exp: str, sets) -> dict:
    """test_sets.json of a size: the order every record's errors follow. Sets missing from it (or
    their sentences) are added from this run; a set whose utterances differ from the recorded
    ones stops the sweep (the records would not be comparable)."""
    path = rec.order_path(size)
    order = read_json(path) if path.is_file() else {}
    changed = False
    for test in sets:
        made = test_set_record(work, exp, test)
        if test not in order:
            order[test], changed = made, True
        elif order[test]["utts"] != made["utts"] or order[test]["lengths"] != made["lengths"]:
            sys.exit(f"error: {work}/data/{test} differs from the recorded {path} ({test}): the "
                     f"corpus changed; record into a new --records folder")
        elif "sentences" not in order[test]:
            order[test]["sentences"], changed = made["sentences"], True
    if changed:
        write_json(path, order)
    return order


def other_decodings(rec, work, exp, method, sets, in_order) -> dict:
    """The method's other decodings (OTHER_DECODINGS) that stage 10 made, and how often the
    language was detected right where a decoding routed by it."""
    other = OTHER_DECODINGS.get(method, {})
    made = {name: decode_dir(work, exp, suffix) for name, suffix in other.items()
            if decode_dir(work, exp, suffix).is_dir()}
    lid = {name: {t: yaml.safe_load((folder / t / "lid_accuracy.yaml").read_text())["accuracy"]
                  for t in rec.profile.test_sets}
           for name, folder in made.items() if (folder / "test" / "lid_accuracy.yaml").is_file()}
    return dict(decodings={name: in_order(collect(work, exp, sets, other[name]))
                           for name in made}, lid_accuracy=lid)


def record_run(rec, work: Path, size: str, method: str, seed: int, lr: float, seconds: float):
    exp = f"asr_{run_tag(method, seed, lr)}"
    sets = ["dev"] + rec.profile.test_sets
    order = update_test_sets(rec, work, size, exp, sets)
    params = yaml.safe_load((work / "exp" / exp / "export" / "params.yaml").read_text())
    resources_file = work / "exp" / exp / "train_resources.yaml"
    resources = yaml.safe_load(resources_file.read_text()) if resources_file.is_file() else {}

    def in_order(errors):
        return {t: [errors[t][u] for u in order[t]["utts"]] for t in sets}

    suffix = DECODE_SUFFIX.get(method, "")
    record = dict(method=method, seed=seed, size=size, lr=lr, trainable=params["trainable"],
                  run_seconds=round(seconds), **resources,
                  decoding=yaml.safe_load((work / "conf" / "decode.yaml").read_text()),
                  errors=in_order(collect(work, exp, sets, suffix)),
                  greedy_errors=in_order(collect(work, exp, sets, suffix, GREEDY_TAG)))
    if method in OTHER_DECODINGS:
        record.update(other_decodings(rec, work, exp, method, sets, in_order))
    write_json(rec.record_path(size, method, seed, lr), record)


def record_zero_shot(rec, work: Path, size: str):
    order = read_json(rec.order_path(size))
    sets = ["dev"] + rec.profile.test_sets
    errors = collect(work, ZERO_SHOT_EXP, sets)
    write_json(rec.zero_shot_path(size),
               dict(method="zero_shot", seed=0, size=size, trainable=0,
                    # run.sh decodes zero-shot Whisper with the tuned models' config
                    decoding=yaml.safe_load((work / "conf" / "decode.yaml").read_text()),
                    errors={t: [errors[t][u] for u in order[t]["utts"]] for t in sets}))
