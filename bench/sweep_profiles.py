"""What the sweep needs to know of a recipe: its folder, its training sizes (the data.sh and
training options of each), its test sets and their display names, which of them pool as
out-of-domain, its real-speech set (the "real vs zero-shot" column), its methods, and where its
records, report and report introduction live. bench/sweep.py --recipe picks one."""

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

METHODS = ["lora", "aw_lora", "vo_lora", "r1_lora", "la_lora", "s2_lora", "adalora", "bitfit",
           "lang_experts"]
NUMBER_WORDS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@dataclass(frozen=True)
class Size:
    data: str  # the recipe's data.sh options (--local_data_opts)
    train: str  # training options (--train_args), after the run's learning rate
    heading: str  # the report's words for it: "<heading>" in "Training size `low`: <heading>"
    legend: str = ""  # the plot's words for it


@dataclass(frozen=True)
class Profile:
    name: str
    recipe: str  # relative to the repository
    title: str  # the report's first line
    test_sets: list
    ood: list  # the test sets pooled as "ood"
    set_names: dict  # test set (and "ood") -> display name
    real_set: str  # the real-speech set of the "real vs zero-shot" column
    real_note: str  # what that set is, in the column's explanation
    real_worse: str  # what a ratio above 1 means
    sizes: dict  # name -> Size
    default_methods: dict  # size -> methods run when --methods is not given
    claim_sets: dict  # "test" / "ood" -> the claims table's "measured on" words
    lang_caption: str  # the per-language table's two numbers
    ood_note: str = ""  # after "the pooled out-of-domain sets hold N distinct sentences"
    # the records' folder, relative to the results folder (docs/results): <size>/ under it
    records: str = "runs"
    report: str = "docs/results.md"
    readme: bool = True  # writes the README's findings paragraph by default
    zero_shot_size: str = "full"  # the size whose first run also decodes zero-shot Whisper
    tuned: list = field(default_factory=lambda: ["lora", "la_lora", "s2_lora", "bitfit"])

    @property
    def path(self) -> Path:
        return ROOT / self.recipe

    @property
    def records_root(self) -> Path:
        return ROOT / "docs" / "results" / self.records

    @property
    def intro(self) -> Path:
        """The report's opening (how the runs were made, what the sets are): prose, in docs."""
        return ROOT / "docs" / "results" / "intro" / f"{self.name}.md"

    @property
    def columns(self) -> list:
        """The CER table's sets: the test sets, and the pooled out-of-domain one if it pools."""
        return self.test_sets + (["ood"] if len(self.ood) > 1 else [])

    def sets_of(self, test: str) -> list:
        return self.ood if test == "ood" else [test]


TEST_OPTS = "--test_per_lang 40 --free_per_lang 40 --room_per_lang 40 --engine_per_lang 40"
MINI_MULTI = Profile(
    name="mini_multi", recipe="egs2/mini_multi/asr1",
    title="Method comparison: mini_multi, seeds and out-of-domain test sets",
    test_sets=["test", "test_free", "test_room", "test_engine", "test_real"],
    ood=["test_free", "test_room", "test_engine"],
    set_names={"test": "in-grammar (`test`)", "test_free": "other sentences (`test_free`)",
               "test_room": "unseen voices, room, 10 dB SNR (`test_room`)",
               "test_engine": "other synthesizer, ja + en (`test_engine`)",
               "test_real": "real telephone speech, en + es (`test_real`)",
               "ood": "out-of-domain, pooled"},
    real_set="test_real", real_note="real recorded speech, Asterisk telephone prompts",
    real_worse="fine-tuning on synthetic speech made real speech worse",
    # the test sets: 40 utterances per language each, more than run.sh's, so that methods can be
    # told apart; low: a quarter of the data for as many updates as full
    sizes={"full": Size(TEST_OPTS, "", "100 utterances per language, 4 epochs"),
           "low": Size(f"--train_subset 25 {TEST_OPTS}", "--max_epoch 16",
                       "25 utterances per language, 16 epochs", "low-resource (25 per language)"),
           # the test suite's: two languages, a few utterances, one epoch
           "tiny": Size("--langs ja,ko --train_per_lang 6 --dev_per_lang 2 --test_per_lang 2",
                        "--max_epoch 1 --batch_size 4 --num_workers 0",
                        "6 utterances per language, 1 epochs")},
    default_methods={"full": METHODS, "low": ["lora", "vo_lora", "la_lora"], "tiny": ["lora"]},
    claim_sets={"test": "in-grammar", "ood": "out-of-domain"},
    lang_caption="in-grammar `test` / out-of-domain pooled",
    ood_note=" (`test_room` and `test_engine` read `test`'s again)")

ASTERISK = Profile(
    name="asterisk", recipe="egs2/asterisk/asr1",
    title="Method comparison: asterisk, real telephone speech in five languages",
    test_sets=["test", "test_shift"], ood=["test_shift"],
    set_names={"test": "core voices, real speech (`test`)",
               "test_shift": "second voices, es + fr + it (`test_shift`)",
               "ood": "second voices, es + fr + it (`test_shift`)"},
    real_set="test", real_note="the core voices' test prompts",
    real_worse="fine-tuning made the core voices worse than zero-shot Whisper",
    # full: every training prompt (about 300 a language), run.sh's training; low: a third of
    # them for about as many updates
    sizes={"full": Size("", "", "all training prompts per language, 4 epochs"),
           "low": Size("--train_per_lang 100", "--max_epoch 12",
                       "100 training prompts per language, 12 epochs",
                       "low-resource (100 per language)")},
    default_methods={"full": METHODS, "low": ["lora", "vo_lora", "la_lora"]},
    claim_sets={"test": "core voices", "ood": "second voices"},
    lang_caption="core voices `test` / second voices `test_shift`",
    ood_note=" (`test_shift` reads `test`'s prompts again)",
    records="asterisk/runs", report="docs/results_asterisk.md", readme=False)

PROFILES = {p.name: p for p in (MINI_MULTI, ASTERISK)}


def profile_of(recipe: str) -> Profile:
    """A profile by name, or by a recipe folder's name (egs2/<name>/asr1, also a copy of it)."""
    if recipe in PROFILES:
        return PROFILES[recipe]
    name = Path(recipe).resolve().parent.name
    if name in PROFILES:
        return PROFILES[name]
    raise ValueError(f"--recipe {recipe!r}: no sweep profile; give one of {sorted(PROFILES)} or "
                     f"a folder egs2/<name>/asr1 of one")
