#!/usr/bin/env python3
"""Writes the seed corpus of uiommufd_ioctl_fuzzer into fuzz/corpus/ (committed; rerun only to regenerate).

FuzzedDataProvider takes integers from the end of the input and byte runs from the front, so a seed is a
deterministic pseudo-random block whose tail steers choices: the tail bytes are biased towards small
values (op selectors, struct shapes) and the sizes vary from a handful of steps to the full 48."""
import os
import random

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def seed(rng, n, small_bias):
    head = bytes(rng.getrandbits(8) for _ in range(n // 2))
    tail = bytes((rng.randrange(16) if rng.random() < small_bias else rng.getrandbits(8)) for _ in range(n - n // 2))
    return head + tail


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(0x10AAF)
    sizes = [16, 32, 64, 128, 256, 512, 1024, 2048]
    k = 0
    for size in sizes:
        for bias in (0.5, 0.8, 0.95, 1.0):
            with open(os.path.join(OUT, "seed-%02d" % k), "wb") as f:
                f.write(seed(rng, size, bias))
            k += 1
    print("wrote %d seeds to %s" % (k, OUT))


if __name__ == "__main__":
    main()
