"""Old home of the constrained beam search; see :mod:`uqf_cli.rec.decoding`."""
# transitional: removed at merge

from uqf_cli.rec.decoding import BeamResult, SidTrie, StepDecoder, constrained_beam_search
from uqf_cli.rec.tiger.t5_decoder import T5StepDecoder, constrained_beam_search_t5, t5_encode

__all__ = ["BeamResult", "SidTrie", "StepDecoder", "T5StepDecoder", "constrained_beam_search",
           "constrained_beam_search_t5", "t5_encode"]
