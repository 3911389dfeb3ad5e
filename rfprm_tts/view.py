"""`rfprm view`: one self-contained HTML page of a solve (no server, no network to open it).

The page shows the question and the chosen answer, the compute spent, the answer groups of
the candidates (what a vote counts), and the search tree: every candidate the search made
(`SolveResult.tree`), each step coloured by its PRM score from red (0) to green (1), the
chosen answer's path outlined. A sample-then-choose strategy's tree is one level: the
candidate list. Clicking a step folds its subtree.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape

from rfprm_tts.trajectory import SearchNode, SolveResult

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.question, .text { white-space: pre-wrap; }
.question { background: #f4f4f8; padding: 8px 12px; border-radius: 6px; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
ul.tree, ul.tree ul { list-style: none; padding-left: 22px; margin: 0; border-left: 1px dashed #bbb; }
ul.tree { padding-left: 0; border: 0; }
.step { display: inline-block; margin: 3px 0; padding: 3px 8px; border-radius: 5px; max-width: 900px;
        border: 2px solid transparent; cursor: pointer; vertical-align: top; }
.node.chosen > .step { border-color: #1a4fd6; box-shadow: 0 0 0 2px #1a4fd633; }
.node.failed > .step { opacity: 0.55; text-decoration: line-through; }
.node.folded > ul { display: none; } .node.folded > .step::after { content: " [+]"; color: #555; }
.score { font: 12px monospace; margin-left: 8px; color: #333; }
.badge { font-size: 11px; padding: 0 5px; border-radius: 3px; background: #333; color: #fff; margin-left: 6px; }
details summary { cursor: pointer; color: #555; }
"""

SCRIPT = """
document.querySelectorAll('.node > .step').forEach(step => step.addEventListener('click',
  () => step.parentElement.classList.toggle('folded')));
const count = sel => document.querySelectorAll(sel).length;
document.getElementById('stats').textContent =
  `${count('li.node')} nodes: ${count('li.node.open')} open, ${count('li.node.finished')} finished, ` +
  `${count('li.node.failed')} failed; ${count('li.node.chosen')} on the chosen path`;
"""


def colour(score: float | None) -> str:
    """Red (0) through yellow to green (1); grey when unscored."""
    if score is None:
        return "#e4e4e4"
    return f"hsl({max(0.0, min(1.0, score)) * 120:.0f}, 70%, 82%)"


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def node_html(node: SearchNode, children: dict[int | None, list[SearchNode]]) -> str:
    classes = " ".join(["node", node.state] + (["chosen"] if node.chosen else []))
    text = node.text.strip() or "(empty)"
    shown = escape(text) if len(text) <= 400 else (
        f"{escape(text[:400])}<details><summary>{len(text) - 400} more characters</summary>{escape(text[400:])}</details>"
    )
    badges = "".join(f'<span class="badge">{escape(b)}</span>' for b in (
        [f"answer {node.answer}"] if node.answer is not None else []) + (["error"] if node.error else []))
    title = escape(node.error or f"score {fmt(node.score)}, this step {fmt(node.step_score)}, {node.generated_tokens} tokens")
    below = "".join(node_html(child, children) for child in children.get(node.id, []))
    return (f'<li class="{classes}" data-id="{node.id}"><div class="step" style="background:{colour(node.step_score)}" '
            f'title="{title}"><span class="text">{shown}</span><span class="score">step {fmt(node.step_score)} '
            f"/ path {fmt(node.score)}</span>{badges}</div>{f'<ul>{below}</ul>' if below else ''}</li>")


def answer_groups(result: SolveResult) -> list[tuple[str, int, float]]:
    """(answer, finished candidates giving it, their summed score), most given first."""
    groups: dict[str, list[float]] = defaultdict(list)
    for c in result.candidates:
        if c.ok and c.answer is not None:
            groups[c.answer].append(c.score or 0.0)
    return sorted(((a, len(s), sum(s)) for a, s in groups.items()), key=lambda g: (-g[1], -g[2]))


def render_html(result: SolveResult) -> str:
    children: dict[int | None, list[SearchNode]] = defaultdict(list)
    for node in result.tree:
        children[node.parent].append(node)
    tree = "".join(node_html(node, children) for node in children.get(None, []))
    usage = result.usage.model_dump(exclude_none=True)
    usage_rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in usage.items())
    groups = "".join(f"<tr><td>{escape(a)}</td><td>{n}</td><td>{s:.3f}</td></tr>" for a, n, s in answer_groups(result))
    params = ", ".join(f"{k}={v}" for k, v in result.strategy_params.items() if v is not None)
    best = result.best
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rfprm: {escape(result.question[:80])}</title>
<style>{STYLE}</style></head><body>
<h1>{escape(result.strategy)} <small>({escape(params)})</small></h1>
<div class="question">{escape(result.question)}</div>
<p>Answer: <b id="answer">{escape(str(result.answer))}</b>, score {fmt(best.score if best else None)}</p>
<h2>Compute</h2><table id="usage">{usage_rows}</table>
<h2>Answers</h2><table id="answers"><tr><th>answer</th><th>candidates</th><th>summed score</th></tr>{groups}</table>
<h2>Search tree</h2><p id="stats">{len(result.tree)} nodes</p>
<p>Colour: the step's PRM score, red 0 to green 1 (grey: unscored); outlined: the chosen path; click a step to fold it.</p>
<ul class="tree" id="tree">{tree}</ul>
<script>{SCRIPT}</script>
</body></html>
"""
