"""PRM scoring at scale: overflow policies, packing vs padded batches, incremental scoring."""

import asyncio
import json
import logging
import random
import shutil

import pytest

from helpers.fakes import ListGenerator, StepTreeGenerator
from helpers.tolerances import FLOAT32
from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.demo.tiny import build_tiny_prm
from rfprm_tts.errors import PRMInputTooLongError
from rfprm_tts.prm import load_prm
from rfprm_tts.prm.formats.step_tag import answer_start
from rfprm_tts.prm.overflow import Piece, plan
from rfprm_tts.runtime.torch_utils import length_batches, padding

QUESTION = "Compute 7 + 5 * 3 - 4."


def random_steps(rng: random.Random, k: int) -> list[str]:
    return [f"{rng.randint(1, 99)} * {rng.randint(1, 9)} = {rng.randint(1, 999)}" for _ in range(k)]


# -- overflow planning, worked by hand ---------------------------------------------------------


def test_plan_fits_whole():
    assert plan([3, 3], budget=6, policy="error") == ([Piece(0, 2, 0)], None)


def test_plan_error_names_the_fix():
    with pytest.raises(PRMInputTooLongError, match="prm.overflow to 'truncate'"):
        plan([3, 3, 3], budget=6, policy="error")


def test_plan_truncate_keeps_the_trailing_steps():
    pieces, note = plan([3, 3, 3, 3], budget=7, policy="truncate")
    assert pieces == [Piece(2, 4, 2)]
    assert "steps 1-2 of 4 unscored" in note


def test_plan_window_overlaps():
    # budget 7 holds two steps of 3: windows [0,2) then [1,3) scoring step 2, then [2,4) scoring 3.
    pieces, note = plan([3, 3, 3, 3], budget=7, policy="window", overlap=1)
    assert pieces == [Piece(0, 2, 0), Piece(1, 3, 2), Piece(2, 4, 3)]
    assert "3 windows" in note


def test_plan_window_skips_a_step_that_never_fits():
    pieces, note = plan([3, 10, 3], budget=7, policy="window", overlap=1)
    assert pieces == [Piece(0, 1, 0), Piece(2, 3, 2)]
    assert "steps [2] unscored" in note


# -- overflow on a real tiny model -----------------------------------------------------------


@pytest.fixture(scope="module")
def short_prm(tmp_path_factory):
    return str(build_tiny_prm(tmp_path_factory.mktemp("short") / "prm", max_position_embeddings=96, seed=3))


def test_truncate_scores_the_trailing_steps_as_their_own_input(short_prm):
    steps = random_steps(random.Random(0), 8)  # ~14 tokens a step: past a 96-token context
    scorer = load_prm(short_prm, overflow="truncate", incremental=False)
    batch = scorer.score_batch(QUESTION, [steps])
    scores, note = batch.step_scores[0], batch.notes[0]
    first = next(i for i, s in enumerate(scores) if s is not None)
    assert first > 0 and all(s is not None for s in scores[first:])
    assert f"steps 1-{first} of 8 unscored" in note
    direct = load_prm(short_prm, incremental=False).score(QUESTION, [steps[first:]])[0]
    assert scores[first:] == pytest.approx(direct, abs=FLOAT32)
    assert len(scorer.encode(QUESTION, steps[first - 1 :])) > 96  # one more step would not fit


def test_window_scores_every_step_with_overlapping_context(short_prm):
    steps = random_steps(random.Random(1), 8)
    scorer = load_prm(short_prm, overflow="window", window_overlap=1, incremental=False)
    pieces = [piece for piece, _ in scorer.pieces(QUESTION, steps)[0]]
    assert len(pieces) > 1 and all(p.keep - p.start <= 1 for p in pieces)
    scores = scorer.score(QUESTION, [steps])[0]
    assert None not in scores
    plain = load_prm(short_prm, incremental=False)
    for p in pieces:
        direct = plain.score(QUESTION, [steps[p.start : p.end]])[0]
        assert scores[p.keep : p.end] == pytest.approx(direct[p.keep - p.start :], abs=FLOAT32)


def test_solve_reports_overflow_per_candidate_and_warns_once(short_prm, caplog):
    long_text = "\n\n".join(random_steps(random.Random(2), 9)) + "\n\n\\boxed{18}"
    settings = Settings(n=3, strategy="best_of_n", prm={"model": short_prm, "overflow": "truncate"})
    with caplog.at_level(logging.WARNING, logger="rfprm_tts.search.context"):
        with ReasoningSolver(settings, generator=ListGenerator([long_text, "\\boxed{18}"])) as solver:
            result = solver.solve(QUESTION)
    long_ones = [c for c in result.candidates if len(c.trajectory.steps) > 1]
    assert long_ones and all(c.prm_note and "unscored" in c.prm_note for c in long_ones)
    assert all(c.step_scores[0] is None and c.score is not None for c in long_ones)
    assert [c.prm_note for c in result.candidates if len(c.trajectory.steps) == 1] == [None]
    assert len([r for r in caplog.records if "longer than the PRM's context" in r.message]) == 1


# -- batching --------------------------------------------------------------------------------


def test_length_batches_by_hand():
    lengths = [10, 30, 11, 12, 31, 100]
    # sorted: 10, 11 | 12 (two rows max) | 30, 31 | 100 (more than 1.1x the batch's shortest)
    batches = length_batches(lengths, max_rows=2, max_tokens=1000)
    assert batches == [[0, 2], [3], [1, 4], [5]]
    assert padding(batches, lengths) == 1 + 1
    assert length_batches(lengths, max_rows=2, max_tokens=60)[2:] == [[1], [4], [5]]  # 2 x 31 > 60


def uncompiled_flex_attention(monkeypatch) -> None:
    """transformers compiles FlexAttention and its block mask on first use (10-40 s on a cold
    CPU cache); the suite runs torch's uncompiled reference of both, which computes the same.
    benchmarks/prm_throughput.py --agreement-only checks the compiled kernel."""
    import transformers.integrations.flex_attention as flex
    import transformers.masking_utils as masking
    from torch.nn.attention.flex_attention import flex_attention

    monkeypatch.setattr(flex.WrappedFlexAttention, "__call__", lambda self: flex_attention)
    monkeypatch.setattr(flex, "is_torch_less_or_equal", lambda *_, **__: True)  # its block mask: not compiled
    monkeypatch.setattr(masking, "_is_torch_greater_or_equal_than_2_6", False)  # nor the masks built here


@pytest.mark.parametrize("attention", ["auto", "flex_attention"])
def test_packed_equals_padded_and_padding_is_reported(tiny_prm_dir, attention, monkeypatch):
    """Packed inputs masked per input by sdpa's dense mask or FlexAttention's block-sparse one
    score as the padded batches do (transformers' default attention)."""
    if attention == "flex_attention":
        uncompiled_flex_attention(monkeypatch)
    rng = random.Random(3)
    trajectories = [random_steps(rng, k) for k in (1, 7, 2, 5, 3)]
    bucket = load_prm(str(tiny_prm_dir), batch_size=2, incremental=False)
    pack = load_prm(str(tiny_prm_dir), batching="pack", max_batch_tokens=300, incremental=False, attention=attention)
    if attention == "flex_attention":  # auto packs under it
        assert load_prm(str(tiny_prm_dir), attention=attention, incremental=False).runner.batching == "pack"
        assert pack.runner.model.config._attn_implementation == "flex_attention"
    a, b = bucket.score_batch(QUESTION, trajectories), pack.score_batch(QUESTION, trajectories)
    for x, y in zip(a.step_scores, b.step_scores):
        assert x == pytest.approx(y, abs=FLOAT32)
    assert b.padded_tokens == 0 and a.tokens == b.tokens == sum(len(bucket.encode(QUESTION, t)) for t in trajectories)
    # one character is one token in the tiny tokenizer: 4 more characters, 4 pad tokens
    pair = bucket.score_batch(QUESTION, [["12 + 3 = 15"], ["1234 + 3 = 1237"]])
    assert pair.padded_tokens == 4


# -- incremental scoring ---------------------------------------------------------------------


def grow(rng: random.Random, beams: list[list[str]], width: int) -> list[list[str]]:
    return [beam + random_steps(rng, rng.randint(1, 2)) for beam in beams for _ in range(width)]


@pytest.mark.parametrize("readout", ["step_tag", "token_min"])
@pytest.mark.parametrize("beams, width, rounds", [(2, 3, 4), (4, 2, 3), (2, 4, 5)])
def test_incremental_equals_full_rescoring(tiny_prm_dir, token_level_prm_dir, readout, beams, width, rounds):
    """A simulated tree search: every round extends kept beams by one or two steps. Shared
    prefixes, new branches, fully cached inputs and parents of different lengths in one
    forward pass (left padding) all occur."""
    prm = str(tiny_prm_dir if readout == "step_tag" else token_level_prm_dir)
    check_incremental_equals_full(prm, readout, beams, width, rounds)


@pytest.mark.parametrize("attention", ["flex_attention", "flash_attention_2"])
def test_the_incremental_runner_runs_sdpa_under_whole_input_attention_and_scores_as_full_scoring(
    tiny_prm_dir, attention
):
    """prm.attention flex_attention and flash_attention_2 are for packed whole inputs; the
    KV-cached runner (the default for step-tag PRMs) masks siblings sharing a row with a tree
    mask that flash attention cannot take, and torch 2.13's CPU flex kernel fails to compile
    its passes, so it runs sdpa (flash-attn need not be installed for it)."""
    prm = load_prm(str(tiny_prm_dir), attention=attention)
    assert prm.runner.model.config._attn_implementation == "sdpa"
    check_incremental_equals_full(str(tiny_prm_dir), "step_tag", 2, 3, 4, attention=attention)


def check_incremental_equals_full(prm: str, readout: str, beams: int, width: int, rounds: int, **options) -> None:
    rng = random.Random(beams * 100 + width * 10 + rounds)
    incremental = load_prm(prm, readout=readout, batch_size=3, **options)
    full = load_prm(prm, readout=readout, incremental=False)
    frontier = [random_steps(rng, rng.randint(1, 3)) for _ in range(beams)]
    for _ in range(rounds):
        batch = frontier + frontier[:1]  # a repeat: fully cached by the time it is read
        got, want = incremental.score_batch(QUESTION, batch), full.score_batch(QUESTION, batch)
        for g, w in zip(got.step_scores, want.step_scores):
            assert g == pytest.approx(w, abs=FLOAT32)
        assert got.tokens < want.tokens
        frontier = grow(rng, rng.sample(frontier, min(len(frontier), beams)), width)


def test_the_children_of_all_kept_beams_run_in_one_forward_pass_one_row_per_parent(tiny_prm_dir):
    """Siblings of different lengths share a row after their parent's cached keys/values (read
    once per parent, not once per child), and scores equal full scoring."""
    rng = random.Random(8)
    parents = [random_steps(rng, 2), random_steps(rng, 3)]
    children = [p + random_steps(rng, 1) + ["x" * k] for p in parents for k in (1, 9, 30)]
    full = load_prm(str(tiny_prm_dir), incremental=False).score_batch(QUESTION, children)
    scorer = load_prm(str(tiny_prm_dir))
    scorer.score(QUESTION, parents)
    shapes = []
    scorer.runner.model.register_forward_pre_hook(
        lambda _, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    got = scorer.score_batch(QUESTION, children)
    assert len(shapes) == 1 and shapes[0][0] == len(parents)
    parent_of = [p for p in parents for _ in range(3)]
    new = [len(scorer.encode(QUESTION, c)) - len(scorer.encode(QUESTION, p)) for c, p in zip(children, parent_of)]
    assert got.tokens == sum(new)
    for g, w in zip(got.step_scores, full.step_scores):
        assert g == pytest.approx(w, abs=FLOAT32)


def test_the_incremental_runner_refuses_a_model_that_cannot_take_its_mask(tiny_prm_dir):
    from rfprm_tts.errors import RfprmError
    from rfprm_tts.prm.runners.incremental import IncrementalRunner

    flex = load_prm(str(tiny_prm_dir), attention="flex_attention", incremental=False).runner.model
    with pytest.raises(RfprmError, match="tree-shaped mask, which flex_attention cannot take"):
        IncrementalRunner(flex)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_incremental_equals_full_rescoring_under_a_sliding_window(tiny_prm_dir, tmp_path, attention):
    """Qwen2 with use_sliding_window: its upper layer reads only the last 24 tokens (transformers
    masks whole inputs so); the incremental runner's tree mask must window that layer alone."""
    windowed = tmp_path / "prm"
    shutil.copytree(tiny_prm_dir, windowed)
    config = json.loads((windowed / "config.json").read_text())
    config.update(use_sliding_window=True, sliding_window=24, max_window_layers=1, layer_types=None)
    (windowed / "config.json").write_text(json.dumps(config))
    trajectory = random_steps(random.Random(9), 4)
    plain = load_prm(str(tiny_prm_dir), incremental=False).score(QUESTION, [trajectory])[0]
    full = load_prm(str(windowed), incremental=False).score(QUESTION, [trajectory])[0]
    assert max(abs(a - b) for a, b in zip(plain, full)) > 1e-3  # the window changes the scores
    check_incremental_equals_full(str(windowed), "step_tag", 2, 3, 4, attention=attention)


@pytest.mark.parametrize("readout", ["step_tag", "token_min"])
def test_incremental_with_eager_attention_equals_full_rescoring(tiny_prm_dir, token_level_prm_dir, readout):
    """Eager attention adds the tree mask to its scores (a float mask; sdpa takes a boolean one)."""
    prm = str(tiny_prm_dir if readout == "step_tag" else token_level_prm_dir)
    check_incremental_equals_full(prm, readout, 2, 3, 3, attention="eager")


def test_incremental_runs_only_new_tokens(tiny_prm_dir):
    scorer = load_prm(str(tiny_prm_dir))
    steps = random_steps(random.Random(4), 4)
    first = scorer.score_batch(QUESTION, [steps[:2]])
    # two children of the same prefix: the prefix is not run again, each child runs its step
    second = scorer.score_batch(QUESTION, [steps[:3], steps[:2] + steps[3:4]])
    step_tokens = [len(scorer.tokenizer(s, add_special_tokens=False)["input_ids"]) + 1 for s in steps]
    assert second.tokens == step_tokens[2] + step_tokens[3]
    # and two new inputs sharing a new prefix run it once
    third = scorer.score_batch("Compute 1 + 2.", [steps[:2], steps[:3]])
    template = len(scorer.encode("Compute 1 + 2.", steps[:3])) - sum(step_tokens[:3])
    assert third.tokens == template - 2 + sum(step_tokens[:3])  # the template's 2-token tail is never run
    assert first.tokens == len(scorer.encode(QUESTION, steps[:2])) - 2


def test_cache_is_released_and_bounded(tiny_prm_dir):
    scorer = load_prm(str(tiny_prm_dir))
    rng = random.Random(5)
    root = random_steps(rng, 2)
    children = [root + random_steps(rng, 1) for _ in range(3)]
    scorer.score(QUESTION, [root])
    scorer.score(QUESTION, children)
    with_children = scorer.runner.cached_tokens
    scorer.release(QUESTION, children[1:])  # the strategy dropped two of three beams
    kept = scorer.runner.cached_tokens
    dropped = sum(len(scorer.tokenizer(c[-1], add_special_tokens=False)["input_ids"]) + 1 for c in children[1:])
    assert kept == with_children - dropped
    scorer.release(QUESTION, [root])  # the parent: still needed by the kept child
    assert scorer.runner.cached_tokens == kept
    scorer.release(QUESTION, children[:1])  # now the whole chain goes, but the question's
    assert scorer.runner.cached_tokens == answer_start(scorer.tokenizer, QUESTION)  # template stays

    scorer.score(QUESTION, children)
    scorer.forget(QUESTION)
    assert scorer.runner.cached_tokens == 0

    bounded = load_prm(str(tiny_prm_dir), cache_max_tokens=100)
    for k in range(6):
        bounded.score(QUESTION, [random_steps(random.Random(k), 3)])
        assert bounded.runner.cached_tokens <= 100
    assert bounded.runner.cached_tokens > 0


def test_two_solves_of_one_question_share_its_prefixes_until_the_last_is_done(tiny_prm_dir):
    """Two searches of the same question at once (two strategies of a benchmark, two users of
    the proxy): what one drops or forgets the other may still grow, so nothing goes until both
    are done."""
    scorer = load_prm(str(tiny_prm_dir))
    rng = random.Random(6)
    root = random_steps(rng, 2)
    children = [root + random_steps(rng, 1) for _ in range(2)]
    scorer.hold(QUESTION)
    scorer.hold(QUESTION)
    scorer.score(QUESTION, children)
    held = scorer.runner.cached_tokens
    scorer.release(QUESTION, children[1:])  # one search drops a beam the other keeps
    scorer.forget(QUESTION)  # and ends
    assert scorer.runner.cached_tokens == held
    again = scorer.score_batch(QUESTION, children)  # the other search scores them again: all cached
    assert again.tokens == 0
    scorer.release(QUESTION, children[1:])  # alone now: its releases free
    assert scorer.runner.cached_tokens < held
    scorer.forget(QUESTION)
    assert scorer.runner.cached_tokens == 0


def test_beam_search_frees_the_cache_as_it_goes(tiny_prm_dir):
    scorer = load_prm(str(tiny_prm_dir))
    freed = []
    release = scorer.release

    def observed_release(question, trajectories):
        before = scorer.runner.cached_tokens
        release(question, trajectories)
        freed.append(before - scorer.runner.cached_tokens)

    scorer.release = observed_release
    settings = Settings(n=4, strategy="beam_search", strategy_params={"beam_width": 2})
    with ReasoningSolver(settings, generator=StepTreeGenerator(depth=4), scorer=scorer) as solver:
        result = solver.solve(QUESTION)
    assert result.answer is not None
    assert len(freed) >= 2 and sum(freed) > 0  # dropped beams freed during the search
    assert scorer.runner.cached_tokens == 0  # the rest forgotten when the solve ended


@pytest.mark.parametrize("incremental", [False, True])
def test_score_many_equals_one_question_at_a_time(tiny_prm_dir, incremental):
    rng = random.Random(6)
    requests = [(QUESTION, [random_steps(rng, 2), random_steps(rng, 3)]), ("Compute 1 + 2.", [random_steps(rng, 1)])]
    together = load_prm(str(tiny_prm_dir), incremental=incremental).score_many(requests)
    for (question, trajectories), got in zip(requests, together):
        alone = load_prm(str(tiny_prm_dir), incremental=incremental).score_batch(question, trajectories)
        for a, b in zip(got.step_scores, alone.step_scores):
            assert a == pytest.approx(b, abs=FLOAT32)
        assert got.tokens == alone.tokens  # nothing is shared across questions


# -- several PRM servers ---------------------------------------------------------------------


def test_prm_replicas_stick_per_question_and_skip_a_dead_one(tiny_prm_dir):
    """Two scripted pooling servers and one address that refuses connections: every request is
    answered, a question's inputs always reach the same server, and the scores equal a
    single-server run."""
    from helpers.servers import Reply, ScriptedServer
    from rfprm_tts.bench.servers import free_port

    def pooling(body):  # a row per step tag, a function of the tokens before it
        rows = [
            [[1 - (sum(ids[: p + 1]) % 97) / 97, (sum(ids[: p + 1]) % 97) / 97] for p, t in enumerate(ids) if t == tag]
            for ids in body["input"]
        ]
        return Reply(200, {"data": [{"index": i, "data": r} for i, r in enumerate(rows)]})

    from transformers import AutoTokenizer

    tag = AutoTokenizer.from_pretrained(tiny_prm_dir).convert_tokens_to_ids("<extra_0>")
    servers = [ScriptedServer(), ScriptedServer(), ScriptedServer()]  # the third serves the single-server run
    for server in servers:
        server.default = pooling
    roots = [server.base_url.removesuffix("/v1") for server in servers]
    dead = f"http://127.0.0.1:{free_port()}"
    try:
        options = dict(backend="http", max_retries=0, backoff_s=0.0)
        single = load_prm(str(tiny_prm_dir), base_url=roots[2], **options)
        several = load_prm(str(tiny_prm_dir), base_url=roots[0], replicas=[dead, roots[1]], **options)
        questions = [f"Compute {k} + {k + 1}." for k in range(8)]
        rng = random.Random(0)
        work = {q: [random_steps(rng, rng.randint(1, 3)) for _ in range(2)] for q in questions}
        for round_ in range(2):  # a question's second call goes where its first went
            got = several.score_many([(q, [t[: round_ + 1] for t in work[q]]) for q in questions])
            want = single.score_many([(q, [t[: round_ + 1] for t in work[q]]) for q in questions])
            assert [b.step_scores for b in got] == [b.step_scores for b in want]
        seen_by = {}
        for index, server in enumerate(servers[:2]):
            for body in server.requests:
                for ids in body["input"]:
                    question = next(
                        q
                        for q in questions
                        if ids[: several.format.answer_start(q)]
                        == several.encode(q, ["x"])[: several.format.answer_start(q)]
                    )
                    seen_by.setdefault(question, set()).add(index)
        assert set(seen_by) == set(questions) and all(len(s) == 1 for s in seen_by.values())
        # the questions hashed to the dead address went to the next server, and stayed there
        to_dead = [q for q in questions if several.runner.replicas.home(q) == 1]
        assert to_dead and all(seen_by[q] == {1} for q in to_dead)
    finally:
        for server in servers:
            server.close()


def test_a_bench_runs_a_problems_jobs_one_at_a_time_so_each_row_counts_its_own_prm_tokens(tiny_prm_dir, tmp_path):
    """Beam search at N = 2 and 4 of one problem, four jobs at once allowed: run side by side,
    the two searches would share the PRM's cached prefixes (or, before questions were held,
    forget each other's), and a row's PRM tokens would depend on which ran first. Each row
    counts what its solve costs alone."""
    from rfprm_tts.bench.datasets import Problem
    from rfprm_tts.bench.runner import run_bench

    settings = Settings(strategy="beam_search", strategy_params={"beam_width": 2})
    solver = ReasoningSolver(settings, generator=StepTreeGenerator(depth=4), scorer=load_prm(str(tiny_prm_dir)))
    alone = {n: solver.solve(QUESTION, n=n).usage.prm_tokens for n in (2, 4)}
    problems = [Problem("a", QUESTION, "1")]
    store = asyncio.run(
        run_bench(problems, ["beam_search"], [2, 4], settings, tmp_path / "run", progress=False, solver=solver)
    )
    rows = {(r["problem_id"], r["n"]): r["prm_tokens"] for r in store.rows()}
    assert rows[("a", 2)] == alone[2] and rows[("a", 4)] == alone[4] and alone[2] != alone[4]
    solver.close()
