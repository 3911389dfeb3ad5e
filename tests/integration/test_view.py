"""`rfprm view` as a user meets it: `rfprm solve --json` on the demo world, `rfprm view` on the
file, and the page opened in a real headless Chromium (Debian's package, which the README's
test command installs), read back through its DOM after the page's script has run."""

import json
import re
import shutil
import subprocess

import pytest

from helpers.processes import rfprm

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium(tmp_path, *args: str) -> str:
    browser = shutil.which("chromium")
    assert browser, "needs Debian's chromium (apt-get install chromium; the README's test command installs it)"
    profile = tmp_path / "profile"
    done = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def solve_and_view(tmp_path, *solve_args: str) -> tuple[dict, str, str]:
    """The result JSON, the page written by `rfprm view`, and its DOM as Chromium built it."""
    out = rfprm("solve", "Compute 7 + 5 * 3 - 4.", "--json", *solve_args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (tmp_path / "result.json").write_text(out.stdout)
    view = rfprm("view", "result.json", "-o", "page.html", cwd=tmp_path)
    assert view.returncode == 0, view.stderr
    page = (tmp_path / "page.html").read_text()
    dom = chromium(tmp_path, "--dump-dom", (tmp_path / "page.html").as_uri())
    return json.loads(out.stdout), page, dom


def nodes(dom: str, cls: str = "") -> int:
    return len(re.findall(rf'<li class="node[^"]*{cls}[^"]*"', dom))


def test_beam_search_page_shows_the_tree_and_the_chosen_path(tmp_path):
    result, page, dom = solve_and_view(
        tmp_path, "--strategy", "beam_search", "-n", "8", "--seed", "2", "--temperature", "1.5", "--html", "direct.html"
    )
    assert (tmp_path / "direct.html").read_text() == page  # solve --html writes the same page
    assert "http://" not in page and "https://" not in page and "<link" not in page  # opens offline
    tree = result["tree"]
    # a drawn node per distinct path of texts from the question (repeats of a step merged)
    by_id = {n["id"]: n for n in tree}

    def path(node):
        return (path(by_id[node["parent"]]) if node["parent"] is not None else ()) + ((node["text"], node["state"]),)

    assert nodes(dom) == len({path(n) for n in tree}) > 5 and len(tree) > 8
    counts = [int(c) for c in re.findall(r'<li class="node[^"]*" data-id="\d+" data-count="(\d+)"', dom)]
    assert sum(counts) == len(tree)  # every candidate the search made is counted once
    assert nodes(dom, "finished") == len({path(n) for n in tree if n["state"] == "finished"}) >= 1
    # the chosen path: one node per step of the chosen answer, from the question down
    assert nodes(dom, "chosen") == len(result["best"]["trajectory"]["steps"]) >= 2
    # the page's script ran in the browser and counted the same
    stats = re.search(r'<p id="stats">([^<]*)</p>', dom).group(1)
    assert stats.startswith(f"{len(tree)} candidates in {nodes(dom)} distinct steps:")
    assert stats.endswith(f"{nodes(dom, 'chosen')} steps on the chosen path")
    assert f'<b id="answer">{result["answer"]}</b>' in dom
    # a step is coloured by its score: the chosen answer's last step is drawn with its own hue
    last = max((n for n in tree if n["chosen"]), key=lambda n: n["id"])
    hue = round(max(0.0, min(1.0, last["step_score"])) * 120)
    assert re.search(rf'data-id="{last["id"]}" data-count="\d+"><div class="step" style="background:hsl\({hue}, ', dom)
    png = tmp_path / "page.png"
    chromium(tmp_path, "--window-size=1200,1400", f"--screenshot={png}", (tmp_path / "page.html").as_uri())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_vote_page_lists_the_candidates_and_the_answer_groups(tmp_path):
    result, _, dom = solve_and_view(
        tmp_path, "--strategy", "majority_vote", "-n", "6", "--seed", "0", "--temperature", "1.5"
    )
    texts = {c["trajectory"]["text"] for c in result["candidates"]}
    assert nodes(dom) == len(texts) and '<ul class="tree" id="tree"><li' in dom and "<ul></ul>" not in dom
    groups = re.findall(r"<tr><td>([^<]*)</td><td>(\d+)</td>", dom)
    answers = [c["trajectory"]["answer"] for c in result["candidates"] if c["trajectory"]["answer"] is not None]
    assert sorted(int(n) for _, n in groups) == sorted(answers.count(a) for a in set(answers))
    assert groups[0][0] == result["answer"]  # the most given answer first: the vote's winner


def test_view_refuses_a_file_that_is_not_a_result(tmp_path):
    (tmp_path / "bench.json").write_text(json.dumps({"strategy": "x"}))
    out = rfprm("view", "bench.json", cwd=tmp_path)
    assert out.returncode == 2 and "is not a solve result" in out.stderr and "rfprm solve" in out.stderr
    out = rfprm("view", "missing.json", cwd=tmp_path)
    assert out.returncode == 2 and "missing.json does not exist" in out.stderr


@pytest.mark.parametrize("text", ["<script>alert(1)</script>", "a & b < c"])
def test_text_is_escaped(text):
    from rfprm_tts.offline.view import render_html
    from rfprm_tts.trajectory import SearchNode, SolveResult, Usage

    result = SolveResult(
        question=text,
        answer=None,
        best=None,
        candidates=[],
        usage=Usage(),
        strategy="best_of_n",
        tree=[SearchNode(id=0, parent=None, text=text, state="finished")],
    )
    page = render_html(result)
    assert text not in page and page.count("<script>") == 1


def test_a_speculative_page_marks_who_wrote_each_step(tmp_path):
    """The draft's steps and the target's are told apart in the tree (class by-draft/by-target:
    a violet or a grey bar), as the result's tree says."""
    result, _, dom = solve_and_view(
        tmp_path,
        "--strategy",
        "speculative_steps",
        "--draft-model",
        "demo-think",
        "-n",
        "2",
        "--seed",
        "0",
        "--param",
        "threshold=0.5",
    )
    written = {n["written_by"] for n in result["tree"]}
    assert written == {"draft", "target"}
    assert nodes(dom, "by-draft") >= 1 and nodes(dom, "by-target") >= 1 and "Left bar: violet" in dom
    for node in (n for n in result["tree"] if n["chosen"]):  # each step of the answer, marked by its writer
        assert re.search(rf'<li class="[^"]*by-{node["written_by"]}[^"]*" data-id="{node["id"]}"', dom), node
    png = tmp_path / "spec.png"
    chromium(tmp_path, "--window-size=1100,1300", f"--screenshot={png}", (tmp_path / "page.html").as_uri())
    assert png.stat().st_size > 20_000
