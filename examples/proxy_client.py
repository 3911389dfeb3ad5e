"""The official openai SDK talking to `rfprm serve`, the OpenAI-compatible PRM-reranking proxy.

Point it at a running proxy:
    rfprm serve --port 8080 --api-key a-long-random-key      # in another shell
    export RFPRM_PROXY_URL=http://127.0.0.1:8080 RFPRM_PROXY_KEY=a-long-random-key
    python examples/proxy_client.py
Without RFPRM_PROXY_URL it starts a proxy on this machine (the demo world), so it runs as is.
"""

import os
from contextlib import nullcontext

from openai import OpenAI

from rfprm_tts import Settings
from rfprm_tts.serve import serving


def one_line(text: str) -> str:
    """A reasoning text on one line: steps apart by ' | ', the thinking's own line breaks as spaces."""
    return text.replace("\n\n", " | ").replace("\n", " ")


url = os.environ.get("RFPRM_PROXY_URL")
with nullcontext(url) if url else serving(Settings.load(serve={"port": 0})) as root:
    client = OpenAI(base_url=f"{root}/v1", api_key=os.environ.get("RFPRM_PROXY_KEY", "unused-on-loopback"))
    response = client.chat.completions.create(
        model="rfprm",
        messages=[
            {"role": "system", "content": "Solve step by step."},
            {"role": "user", "content": "Compute 9 + 8 * 7."},
        ],
        temperature=0.8,  # sampling fields reach the upstream, within the server's limits
        max_tokens=256,  # bounds each answer
        extra_body={"rfprm": {"strategy": "weighted_best_of_n", "n": 8, "return_candidates": True}},
    )
    print("Answer text:", one_line(response.choices[0].message.content))
    extra = response.model_extra["rfprm"]
    print("Answer:", extra["answer"], "| strategy:", extra["strategy"], "| score:", round(extra["score"], 3))
    print("Candidates' answers:", [c["answer"] for c in extra["candidates"]])
    print("Usage:", response.usage.completion_tokens, "generated tokens,", extra["usage"]["prm_tokens"], "PRM tokens")

    # streaming: progress events while the search runs (no choices, an `rfprm` object), then the answer;
    # a token budget per request caps what the search may spend
    stream = client.chat.completions.create(
        model="rfprm",
        messages=[{"role": "user", "content": "Compute 4 * 6 - 5."}],
        stream=True,
        extra_body={"rfprm": {"strategy": "beam_search", "n": 8, "token_budget": 4000}},
    )
    text = ""
    for chunk in stream:
        event = (chunk.model_extra or {}).get("rfprm", {})
        if event.get("event") == "progress":
            print(
                f"  round {event['round']} {event['phase']}: {event['candidates']} candidates, {event['open']} open, "
                f"{event['generated_tokens']} tokens so far"
            )
        elif chunk.choices:
            text += chunk.choices[0].delta.content or ""
    print("Streamed:", one_line(text))
