"""Pointer-Augmented Neural Memory (PANM) for length extrapolation.

`PANM` is the memory module to plug onto any encoder; `PANMSeq2Seq` is the complete model that
the benchmark trains. See the README for the command line.
"""

from panm.memory.panm import PANM, PANMConfig, PANMOutput
from panm.models.panm_seq2seq import PANMSeq2Seq, PANMSeq2SeqConfig

__all__ = ["PANM", "PANMConfig", "PANMOutput", "PANMSeq2Seq", "PANMSeq2SeqConfig"]
