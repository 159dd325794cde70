"""Bounces: read what mail systems send back, tell what it means, record it in the state DB.

The package, one idea a module: `sources` (files, Maildirs, mboxes, CSV lists), `reader` (one
message: which kind it is), `mime` (walking the MIME tree, the original inside), `fields` (DSN
fields wherever they are), `plaintext` (bounces written as prose), `notifications` (JSON
notifications), `feedback` (ARF complaints and auto-replies), `verdict` (hard or soft, and
whose fault), `reasons` (codes and the redacted reason kept), `apply` (matching and recording).
"""

from rollout.bounces.apply import (
    BounceReport,
    Disposition,
    Match,
    Result,
    apply_bounces,
    judge_notices,
)
from rollout.bounces.mime import normalise_message_id
from rollout.bounces.model import Bounce, Kind, Notice, Unparsed
from rollout.bounces.reader import read_message
from rollout.bounces.sources import MissingPath, check_paths, iter_bounces

__all__ = [
    "Bounce",
    "BounceReport",
    "Disposition",
    "Kind",
    "Match",
    "MissingPath",
    "Notice",
    "Result",
    "Unparsed",
    "apply_bounces",
    "check_paths",
    "iter_bounces",
    "judge_notices",
    "normalise_message_id",
    "read_message",
]
