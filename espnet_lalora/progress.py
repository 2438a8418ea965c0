"""A progress line for logs and terminals alike: done/total, rate and ETA, every few seconds."""

import sys
import time


class Progress:
    def __init__(self, total: int, what: str, unit: str = "utt", every: float = 5.0, stream=None):
        self.total, self.what, self.unit, self.every = total, what, unit, every
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1):
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every or self.done == self.total:
            self.last = now
            self._print(now)

    def _print(self, now):
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        pct = 100.0 * self.done / max(self.total, 1)
        print(f"{self.what}: {self.done}/{self.total} {self.unit} ({pct:.0f}%), "
              f"{rate:.2f} {self.unit}/s, elapsed {elapsed:.0f} s, ETA {eta:.0f} s",
              file=self.stream, flush=True)
