"""Tools on an in-process model (rfprm_tts.generators.tool_text): offered through the model's
own chat template, the call read back from what the model writes, voted on through the proxy.

The model is a real Qwen2 checkpoint loaded by the real loading code, its weights set by hand so
that greedy decoding walks a chain: each token's successor is fixed (one-hot embeddings, no
attention or MLP output, an lm_head that maps each token to the next). The last token of the
generation prompt leads to a Hermes tool call, then to EOS. A random tiny model never calls.
"""

import itertools
import json

import openai
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from helpers.proxy import running
from helpers.tools import WEATHER
from rfprm_tts import Settings
from rfprm_tts.chat import render, template_messages, to_messages
from rfprm_tts.demo.tiny import build_tokenizer
from rfprm_tts.generators.tool_text import read_tool_calls

CALL = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}'

# ChatML with tools, written for these tests: the tools as JSON lines in the system turn, the
# history's calls as Hermes blocks, tool results in a user turn.
TOOLS_TEMPLATE = (
    "{%- if tools %}{{- '<|im_start|>system\\nYou may call these tools:\\n<tools>\\n' }}"
    "{%- for tool in tools %}{{- tool | tojson + '\\n' }}{%- endfor %}"
    '{{- \'</tools>\\nCall one as <tool_call>{"name": ..., "arguments": ...}</tool_call>.<|im_end|>\\n\' }}{%- endif %}'
    "{%- for message in messages %}"
    "{%- if message['role'] == 'tool' %}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') }}"
    "{%- for call in message.get('tool_calls', []) %}"
    "{{- '<tool_call>' + {'name': call['function']['name'], 'arguments': call['function']['arguments']} | tojson"
    " + '</tool_call>' }}"
    "{%- endfor %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build_caller(directory):
    """The chain model: after the generation prompt's last token ("\\n"), <tool_call>, the call,
    </tool_call>, EOS."""
    tokenizer = build_tokenizer(plain=["<tool_call>", CALL, "</tool_call>"], chat_template=TOOLS_TEMPLATE)
    vocab = len(tokenizer)
    hidden = vocab + (-vocab % 16)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        architectures=["Qwen2ForCausalLM"],
    )
    model = Qwen2ForCausalLM(config)
    ids = tokenizer.convert_tokens_to_ids
    chain = [tokenizer.encode("\n")[0], ids("<tool_call>"), ids(CALL), ids("</tool_call>"), tokenizer.eos_token_id]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for norm in (
            model.model.norm,
            model.model.layers[0].input_layernorm,
            model.model.layers[0].post_attention_layernorm,
        ):
            norm.weight.fill_(1.0)
        model.model.embed_tokens.weight[:, :vocab] = torch.eye(vocab)
        for token, successor in itertools.pairwise(chain):
            model.lm_head.weight[successor, token] = 20.0
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_the_template_gets_the_tools_and_the_history_its_calls_as_objects():
    tokenizer = build_tokenizer(chat_template=TOOLS_TEMPLATE)
    history = [
        {"role": "user", "content": "What should I wear in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 8}'},
    ]
    prompt = render(tokenizer, history, tools=[WEATHER])
    assert json.dumps(WEATHER) in prompt  # the tool, as the template writes it
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>' in prompt  # an object
    assert '<tool_response>\n{"temp": 8}\n</tool_response>' in prompt and prompt.endswith("<|im_start|>assistant\n")


def test_a_history_call_nested_past_pythons_limit_is_rendered_as_sent():
    messages = [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[" * 50_000}}],
        },
        {"role": "tool", "tool_call_id": "c", "content": "r"},
    ]
    [_, call, _] = template_messages(to_messages(messages))
    assert call["tool_calls"][0]["function"]["arguments"] == "[" * 50_000


def test_calls_are_read_in_the_hermes_format():
    text, calls = read_tool_calls('Let me look.\n<tool_call>{"name": "f", "arguments": {"b": 1, "a": [2]}}</tool_call>')
    assert text == "Let me look." and [c["function"] for c in calls] == [
        {"name": "f", "arguments": '{"b": 1, "a": [2]}'}
    ]
    _, [unclosed] = read_tool_calls('<tool_call>{"name": "g", "arguments": {}}')  # EOS before the close
    assert unclosed["function"] == {"name": "g", "arguments": "{}"}
    _, [broken] = read_tool_calls("<tool_call>get_weather(Paris)</tool_call>")
    assert broken["function"] == {"name": "", "arguments": "get_weather(Paris)"}  # the vote fails it
    assert read_tool_calls("No call here.") == ("No call here.", None)
    _, [as_text] = read_tool_calls('<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>')
    assert as_text["function"]["arguments"] == '{"a": 1}'  # written as JSON text: taken as it is, not encoded twice


def test_an_in_process_model_calls_a_tool_through_the_proxy(tmp_path, tiny_prm_dir):
    model = build_caller(tmp_path / "caller")
    settings = Settings(
        n=2,
        strategy="majority_vote",
        generator={"model": str(model), "temperature": 0.0, "max_tokens": 16},
        prm={"model": str(tiny_prm_dir)},
    )
    with running(settings) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="any", max_retries=0)
        response = client.chat.completions.create(
            model="rfprm", messages=[{"role": "user", "content": "What should I wear in Paris?"}], tools=[WEATHER]
        )
    [choice] = response.choices
    [call] = choice.message.tool_calls
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}
    assert response.model_extra["rfprm"]["answer"] == 'get_weather({"city":"Paris","unit":"c"})'
