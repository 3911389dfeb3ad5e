"""`rfprm view`: one self-contained HTML page of a solve (no server, no network to open it).

The page shows the question and the chosen answer, the compute spent, the answer groups of
the candidates (what a vote counts), and the search tree: every candidate the search made
(`SolveResult.tree`), each step coloured by its PRM score from red (0) to green (1), the
chosen answer's path outlined. A sample-then-choose strategy's tree is one level: the
candidate list. Siblings that added the same text are drawn once, with their count. Clicking
a step folds its subtree.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from html import escape

from rfprm_tts.search.thinking import ThinkingControl
from rfprm_tts.trajectory import NO_ANSWER, SearchNode, SolveResult

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
.node.by-draft > .step, .node.chosen.by-draft > .step { border-left: 6px solid #8a3ffc; }
.node.by-target > .step, .node.chosen.by-target > .step { border-left: 6px solid #555; }
details summary { cursor: pointer; color: #555; }
"""

VISITS = " N, Q: the tree search's visits of the node and their mean value (the PRM's score, backed up)."
WRITERS = " Left bar: violet, the draft model wrote the step; grey, the target model."

SCRIPT = """
document.querySelectorAll('.node > .step').forEach(step => step.addEventListener('click',
  () => step.parentElement.classList.toggle('folded')));
const count = sel => [...document.querySelectorAll(sel)].reduce((sum, li) => sum + Number(li.dataset.count), 0);
document.getElementById('stats').textContent =
  `${count('li.node')} candidates in ${document.querySelectorAll('li.node').length} distinct steps: ` +
  `${count('li.node.open')} open, ${count('li.node.finished')} finished, ${count('li.node.failed')} failed; ` +
  `${document.querySelectorAll('li.node.chosen').length} steps on the chosen path`;
"""


def colour(score: float | None) -> str:
    """Red (0) through yellow to green (1); grey when unscored."""
    if score is None:
        return "#e4e4e4"
    return f"hsl({max(0.0, min(1.0, score)) * 120:.0f}, 70%, 82%)"


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@dataclass
class Shown:
    """A drawn node: the candidates of one parent that added the same text (a search often
    samples the same step again), merged, with their children together."""

    members: list[SearchNode]
    children: list[Shown] = field(default_factory=list)

    @property
    def first(self) -> SearchNode:
        return max(self.members, key=lambda n: (n.chosen, n.score is not None))


def merge(ids: list[int], nodes: dict[int, SearchNode], below: dict[int | None, list[int]]) -> list[Shown]:
    """The nodes `ids` (siblings) merged by text and state, each with its merged children."""
    groups: dict[tuple[str, str], list[SearchNode]] = {}
    for i in ids:
        groups.setdefault((nodes[i].text, nodes[i].state), []).append(nodes[i])
    return [
        Shown(members, merge([c for m in members for c in below.get(m.id, [])], nodes, below))
        for members in groups.values()
    ]


def node_html(shown: Shown) -> str:
    node = shown.first
    chosen = any(m.chosen for m in shown.members)
    writer = [f"by-{node.written_by}"] if node.written_by else []
    classes = " ".join(["node", node.state, *writer] + (["chosen"] if chosen else []))
    text = node.text.strip() or "(empty)"
    body = (
        escape(text)
        if len(text) <= 400
        else (
            f"{escape(text[:400])}<details><summary>{len(text) - 400} more characters</summary>{escape(text[400:])}</details>"
        )
    )
    badges = (
        ([f"x{len(shown.members)}"] if len(shown.members) > 1 else [])
        + ([f"answer {node.answer}"] if node.answer is not None else [])
        + (["error"] if node.error else [])
        + ([f"N {node.visits}, Q {fmt(node.value)}"] if node.visits is not None else [])
    )
    title = escape(
        node.error or f"score {fmt(node.score)}, this step {fmt(node.step_score)}, {node.generated_tokens} tokens"
    )
    below = "".join(node_html(child) for child in shown.children)
    return (
        f'<li class="{classes}" data-id="{node.id}" data-count="{len(shown.members)}">'
        f'<div class="step" style="background:{colour(node.step_score)}" title="{title}"><span class="text">{body}</span>'
        f'<span class="score">step {fmt(node.step_score)} / path {fmt(node.score)}</span>'
        + "".join(f'<span class="badge">{escape(b)}</span>' for b in badges)
        + f"</div>{f'<ul>{below}</ul>' if below else ''}</li>"
    )


def figure(value: object) -> str:
    """A usage figure as the CLI prints it: seconds to 2 decimals, FLOPs in 3 significant digits."""
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1e6 else f"{value:.3g}"
    return str(value)


def answer_groups(result: SolveResult) -> list[tuple[str, int, float | None]]:
    """(answer, finished candidates giving it, their summed score: None when none was scored,
    as in a plain vote), most given first."""
    groups: dict[str, list[float | None]] = defaultdict(list)
    for c in result.candidates:
        if c.ok and c.answer is not None:
            groups[c.answer].append(c.score)
    summed = [(a, len(s), None if all(x is None for x in s) else sum(x or 0.0 for x in s)) for a, s in groups.items()]
    return sorted(summed, key=lambda g: (-g[1], -(g[2] or 0.0)))


def render_html(result: SolveResult) -> str:
    below: dict[int | None, list[int]] = defaultdict(list)
    for node in result.tree:
        below[node.parent].append(node.id)
    tree = "".join(node_html(shown) for shown in merge(below[None], {n.id: n for n in result.tree}, below))
    usage = result.usage.model_dump(exclude_none=True)
    usage_rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(figure(v))}</td></tr>" for k, v in usage.items())
    groups = "".join(f"<tr><td>{escape(a)}</td><td>{n}</td><td>{fmt(s)}</td></tr>" for a, n, s in answer_groups(result))
    params = result.params_text(hide=ThinkingControl.idle_knobs(result.strategy_params))
    best = result.best
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rfprm: {escape(result.question[:80])}</title>
<style>{STYLE}</style></head><body>
<h1>{escape(result.strategy)} <small>({escape(params)})</small></h1>
<div class="question">{escape(result.question)}</div>
<p>Answer: <b id="answer">{escape(NO_ANSWER if result.answer is None else result.answer)}</b>, score {fmt(best.score if best else None)}</p>
<h2>Compute</h2><table id="usage">{usage_rows}</table>
<h2>Answers</h2><table id="answers"><tr><th>answer</th><th>candidates</th><th>summed score</th></tr>{groups}</table>
<h2>Search tree</h2><p id="stats">{len(result.tree)} nodes</p>
<p>Colour: the step's PRM score, red 0 to green 1 (grey: unscored); outlined: the chosen path; xK: K candidates
added the same text there (merged); click a step to fold it.{WRITERS if any(n.written_by for n in result.tree) else ""}\
{VISITS if any(n.visits is not None for n in result.tree) else ""}</p>
<ul class="tree" id="tree">{tree}</ul>
<script>{SCRIPT}</script>
</body></html>
"""
