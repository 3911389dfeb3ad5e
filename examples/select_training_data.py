"""Pick fine-tuning data with the PRM (the ReasonFlux paper's offline use), then score the
same answers as RL rewards.

1. Sample answers to a few questions (here: the demo world; in practice your own JSONL of
   question/response rows, or `rfprm score` on the command line).
2. `score_file` scores every row (resumable; writes scored.jsonl beside this run).
3. `select_file` keeps the PRM's best correct answer per question.
4. `RewardModel` turns the PRM into a GRPO reward: 0.75 x PRM + 0.25 x outcome.
"""

import json

from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.offline.score import score_file
from rfprm_tts.offline.select import Rule, select_file
from rfprm_tts.prm import build_scorer
from rfprm_tts.rewards import RewardModel

questions = {"Compute 7 + 5 * 3 - 4.": "18", "Compute 9 + 8 * 7.": "65", "Compute 4 * 6 - 5.": "19"}
settings = Settings()
with ReasoningSolver(settings) as solver, open("samples.jsonl", "w") as f:
    for question, gold in questions.items():
        result = solver.solve(question, strategy="majority_vote", n=6, generator__temperature=1.2, generator__seed=1)
        for c in result.candidates:
            f.write(json.dumps({"question": question, "response": c.trajectory.text, "answer": gold}) + "\n")

scorer = build_scorer(settings.prm)
summary = score_file(scorer, settings, "samples.jsonl", "scored.jsonl", progress=False)
print(f"scored {summary.scored} of {summary.rows} rows, {summary.prm_tokens} PRM tokens")

kept = select_file("scored.jsonl", "kept.jsonl", Rule(top_k=1, require_correct=True, gold_field="answer"))
print(kept.table())
with open("kept.jsonl") as kept_rows:
    kept_lines = kept_rows.read().splitlines()
for line in kept_lines:
    row = json.loads(line)
    print(f"  {row['question']}  score {row['rfprm']['scores']['reasonflux']:.3f}: {row['response']!r}")

with open("samples.jsonl") as samples:
    rows = [json.loads(line) for line in samples][:4]
rewards = RewardModel(settings, scorer=scorer).rewards(
    [r["question"] for r in rows], [r["response"] for r in rows], [r["answer"] for r in rows]
)
print(
    "rewards:",
    [round(r.reward, 3) for r in rewards],
    "(prm",
    [round(r.prm, 3) for r in rewards],
    "outcome",
    [r.outcome for r in rewards],
    ")",
)
scorer.close()
