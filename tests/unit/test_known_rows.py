"""KnownRows (prm/runners/vllm_pooling.py): completing pooling replies that hold rows for an
uncached tail only, with rows worked out by hand (a row is [the token id, its position])."""

from rfprm_tts.prm.runners.vllm_pooling import KnownRows


def rows(ids, start=0):
    return [[float(t), float(start + p)] for p, t in enumerate(ids)]


def test_a_tail_is_completed_with_the_head_of_a_sequence_seen_before():
    known = KnownRows(max_tokens=100)
    first = [1, 2, 3, 4, 5]
    assert known.complete([first], [rows(first)]) == [rows(first)]
    # a prompt sharing 4 tokens, of which vLLM served the first 4 from its cache
    grown = [1, 2, 3, 4, 9, 8]
    assert known.complete([grown], [rows(grown[4:], 4)]) == [rows(grown)]


def test_a_head_cached_by_another_prompt_of_the_same_batch():
    known = KnownRows(max_tokens=100)
    a, b = [7, 7, 7, 1], [7, 7, 7, 2, 3]
    # b's reply comes first and is a tail; a's is whole: b is completed from a
    assert known.complete([b, a], [rows(b[3:], 3), rows(a)]) == [rows(b), rows(a)]


def test_a_head_no_longer_held_is_unknown():
    known = KnownRows(max_tokens=6)
    known.complete([[1, 2, 3, 4]], [rows([1, 2, 3, 4])])
    known.complete([[5, 6, 7, 8]], [rows([5, 6, 7, 8])])  # 8 tokens > 6: [1, 2, 3, 4] is dropped
    assert known.tokens == 4
    assert known.complete([[1, 2, 3, 9]], [rows([9], 3)]) == [None]
    assert known.complete([[5, 6, 7, 9]], [rows([9], 3)]) == [rows([5, 6, 7, 9])]
