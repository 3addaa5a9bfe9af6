"""Integrity: the hash chain over the log, its verification and checkpoints
(docs/integrity.md)."""

from .chain import (
    CHECKPOINT_HEX,
    ERASED_TAG,
    GENESIS,
    Checkpoint,
    chain_step,
    encode_fact,
    encode_names,
    erasable,
    erased_hash,
    erased_marker,
    fact_hash,
    fact_head,
    format_checkpoint,
    kept_digest,
    named_hash,
    named_hash_input,
    parse_checkpoint,
    single_step,
)
from .verify import VerifyReport, checkpoint_of, verify_backend, verify_log

__all__ = [
    "CHECKPOINT_HEX",
    "ERASED_TAG",
    "GENESIS",
    "Checkpoint",
    "VerifyReport",
    "chain_step",
    "checkpoint_of",
    "encode_fact",
    "encode_names",
    "erasable",
    "erased_hash",
    "erased_marker",
    "fact_hash",
    "fact_head",
    "kept_digest",
    "format_checkpoint",
    "named_hash",
    "named_hash_input",
    "parse_checkpoint",
    "single_step",
    "verify_backend",
    "verify_log",
]
