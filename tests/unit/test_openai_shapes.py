"""How a response's JSON is read (rfprm_tts.generators.openai_shapes)."""

from rfprm_tts.generators.openai_shapes import choice_token_logprobs


def test_completions_api_logprobs_take_the_chat_shape():
    """The completions API's parallel lists (top_logprobs as {token: logprob}) become chat's
    per-token entries, the likeliest first."""
    logprobs = {
        "tokens": ["7", " +"],
        "token_logprobs": [-0.5, -1.0],
        "top_logprobs": [{"8": -1.5, "7": -0.5}, {" +": -1.0}],
    }
    entries = choice_token_logprobs({"logprobs": logprobs})
    assert entries == [
        {
            "token": "7",
            "logprob": -0.5,
            "bytes": [55],
            "top_logprobs": [
                {"token": "7", "logprob": -0.5, "bytes": [55]},
                {"token": "8", "logprob": -1.5, "bytes": [56]},
            ],
        },
        {
            "token": " +",
            "logprob": -1.0,
            "bytes": [32, 43],
            "top_logprobs": [{"token": " +", "logprob": -1.0, "bytes": [32, 43]}],
        },
    ]
