"""Sampling with the thinking under control: stop a long `<think>` early, or hold it to a budget.

The samples grow together, in rounds of at most `probe_every` thinking tokens (for the
confidence and PRM exits, to the end of the paragraph if that comes first):

    grow every thinking sample by one chunk, stopping at </think>
    closed before min_thinking_tokens?    the close becomes "Wait", thinking goes on    (s1)
    reached max_thinking_tokens?          close it with answer_prompt                   (s1)
    closed?                               write the answer after the close
    still thinking, early_exit set:       probe = greedy answer after answer_prompt
        "probe":      stop once the last probe_agree probes agree                       (Dynasor-CoT)
        "confidence": stop once the probe's mean token probability >= exit_threshold    (DEER)
        "prm":        stop once the PRM scores thinking + probe >= exit_threshold       (PRM-gated)
        a stopped sample's answer is its probe (those tokens are the answer's)
    finish_first = m: once m samples have answers, the others stop                     (short-m@k)

A generator that streams (the openai backend, as generator.stream_thinking says) runs the same rules
without rounds: each sample's thinking is one stream, a probe goes out beside it at each point
where a round would end, the probes are judged in order, and the stream is closed at the first
that stops the sample (the server aborts the request there); finish_first closes the others.

Probe tokens are generated tokens (they count against budgets) and are also counted apart,
in `usage.probe_tokens`. A backend must continue a partial answer (`GenerationRequest.prefix`):
the in-process backends do, and an OpenAI-compatible server through completions or a chat
continued with `continue_final_message` (vLLM).
"""

from rfprm_tts.search.thinking.control import FORCED_CONTINUATION, ThinkingControl
from rfprm_tts.search.thinking.sampling import sample_thinking

__all__ = ["FORCED_CONTINUATION", "ThinkingControl", "sample_thinking"]
