"""sclite (NIST SCTK), the scorer of ESPnet recipes: trn files in, ``result.txt`` out, and its
summary lines read back."""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

from espnet_lalora.fileio import write_text_atomic

FIELDS = ["Snt", "Wrd", "Corr", "Sub", "Del", "Ins", "Err", "S.Err"]


def sclite_command() -> List[str]:
    found = shutil.which("sclite")
    if found:
        return [found]
    for candidate in ("/usr/lib/sctk/bin/sclite", "/usr/local/bin/sclite"):
        if Path(candidate).is_file():
            return [candidate]
    if shutil.which("sctk"):
        return ["sctk", "sclite"]
    raise FileNotFoundError("sclite not found: install Debian's sctk (bash tools/install.sh)")


def write_trn(path, units: Dict[str, List[str]]):
    with open(path, "w", encoding="utf-8") as f:
        for utt in sorted(units):
            f.write(f"{' '.join(units[utt])} ({utt})\n")


def run_sclite(ref_trn, hyp_trn, result_txt):
    """Score and write sclite's percentage and count summaries plus alignments to result_txt."""
    cmd = sclite_command() + ["-r", str(ref_trn), "trn", "-h", str(hyp_trn), "trn", "-i", "rm",
                              "-o", "all", "stdout"]
    result = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8")
    if result.returncode != 0:
        raise RuntimeError(f"sclite failed: {result.stderr.strip()[-500:]}")
    write_text_atomic(result_txt, result.stdout)
    return parse_result(result_txt)


def parse_result(result_txt) -> Dict[str, Dict[str, float]]:
    """``{"percent": {Snt, Wrd, Corr, ...}, "count": {...}}`` from sclite's Sum/Avg and Sum rows."""
    out = {}
    for line in Path(result_txt).read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*\|\s*(Sum/Avg|Sum)\s*\|(.*)\|(.*)\|\s*$", line)
        if match:
            numbers = [float(x) for x in (match.group(2) + " " + match.group(3)).split()]
            key = "percent" if match.group(1) == "Sum/Avg" else "count"
            out.setdefault(key, dict(zip(FIELDS, numbers)))
    if "percent" not in out:
        raise ValueError(f"{result_txt}: no sclite summary found")
    return out
