"""Coverage-guided fuzzing of the codec's decoder with atheris (not run by pytest;
tests/test_codec_fuzz.py is the hypothesis counterpart that is).

Every input is decoded as a full encoding, as a delta onto each container kind, and
in a batch; anything but a value or DecodeError is a crash atheris reports (with
the input, saved as crash-<hash>). See fuzz/README.md.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from everstore import Codec, DecodeError

CODEC = Codec()

# valid encodings to start from: atheris mutates them
SEEDS = [
    CODEC.encode(value)
    for value in (
        None,
        2**80,
        float("nan"),
        "text",
        b"bytes",
        (1, (2,)),
        {1, 2},
        frozenset({"a"}),
        {"a": [1, {"b": (2,)}]},
        {(1,): "tuple key"},
        complex(1, 2),
    )
]
SEEDS.append(CODEC.encode_change(3, CODEC.encode(["a"]), ["a", (1,)]) or b"")
SEEDS.append(CODEC.encode_change(3, CODEC.encode({"a": 1}), {"b": (2,)}) or b"")


def test_one(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        CODEC.decode(data)
    with contextlib.suppress(DecodeError):
        CODEC.decode_many([data, b"1"])
    if CODEC.is_delta(data):
        for base in ([], {}, set(), Codec.NO_VALUE):
            with contextlib.suppress(DecodeError):
                CODEC.decode_fact(data, base, value_at=lambda seq: [])


def main() -> None:
    last = Path(sys.argv[-1]) if len(sys.argv) > 1 else None
    if last is not None and not last.name.startswith("-") and not last.is_file():
        # a corpus directory (not an input to replay): seed it with valid encodings
        last.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(SEEDS):
            (last / f"seed-{i}").write_bytes(seed)
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
