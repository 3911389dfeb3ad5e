"""Prompts as chat (chat.py): checking a conversation, the question a PRM scores, and the
rendering every backend shares. A bad prompt as `solve` reports it: test_solver.py."""

import pytest

from rfprm_tts import ConfigError
from rfprm_tts.chat import prm_messages, question_of, render, render_plain, to_messages


def test_a_conversation_becomes_plain_checked_messages():
    parts = [{"type": "text", "text": "What is "}, {"type": "text", "text": "2 + 2?"}]
    assert to_messages([{"role": "user", "content": parts, "name": "ann"}]) == [
        {"role": "user", "content": "What is 2 + 2?"}
    ]
    assert to_messages("q", system_prompt="Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "q"},
    ]
    own = [{"role": "developer", "content": "Mine."}, {"role": "user", "content": "q"}]
    assert to_messages(own, system_prompt="Be brief.") == [
        {"role": "system", "content": "Mine."},
        {"role": "user", "content": "q"},
    ]
    with pytest.raises(ConfigError, match="the last message must be the user's question"):
        to_messages([{"role": "user", "content": " \n "}])


def test_the_question_is_the_last_user_message():
    history = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "second"},
    ]
    assert question_of(history) == "second"
    assert question_of(history[:3]) == "first"


def test_rendering_places_the_turn_and_the_partial_answer():
    class Template:
        def apply_chat_template(self, messages, add_generation_prompt, tokenize):
            assert tokenize is False
            turns = "".join(f"<{m['role']}>{m['content']}" for m in messages)
            return turns + ("<assistant>" if add_generation_prompt else "")

    messages = to_messages("q")
    assert render(Template(), messages, "1 + 1 = 2\n\n") == "<user>q<assistant>1 + 1 = 2\n\n"
    answered = prm_messages("q", answer="a")
    assert render(Template(), answered, open_turn=False) == "<user>q<assistant>a"
    assert render_plain(messages) == "q"  # a lone question goes as given
    assert render_plain(to_messages("q", "S"), "so") == "S\n\nqso"


def test_a_prms_conversation_has_its_own_system_message_and_no_history():
    assert prm_messages("q") == [{"role": "user", "content": "q"}]
    assert prm_messages("q", "Judge.", "s1<tag>s2") == [
        {"role": "system", "content": "Judge."},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "s1<tag>s2"},
    ]
