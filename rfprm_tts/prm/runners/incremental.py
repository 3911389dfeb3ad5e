"""The incremental runner: a transformers PRM that runs only the tokens it has not seen before.

A search scores the same prefixes again and again (beam search re-scores each beam's whole
history at every step, so PRM work grows with the square of the trajectory length). The PRM
is a causal decoder: a prefix's keys/values and outputs do not change when steps are
appended (a format with `prefix_reuse`). So scored prefixes live in a prefix tree whose edges
are token segments that end at the format's cuts (step boundaries), each holding its
segment's keys/values and the outputs its format reads there. Scoring a trajectory walks the tree as far as its tokens match and runs only the
rest, attending to the cached keys/values. Within one call, prefixes that several new inputs
share are run once: nodes are made where inputs end or branch, and for the question's
template, which every trajectory of a question shares. Siblings (new segments after the same
node: the children of one beam) share a forward row, so their parent's keys/values are
copied and read once; a tree-shaped attention mask keeps them apart.

Memory is bounded by `max_tokens` (least recently used leaves go first, after each call);
`release` drops the prefixes a strategy no longer needs and `forget` a finished question's.
Solves of one question at the same time (two strategies in a benchmark, two users of the
proxy) share its prefixes: each `hold`s the question, `forget` frees it when the last one is
done, and `release` frees nothing while another holds it (what one search drops, the other
may still grow).
Scores equal full re-scoring up to float rounding (tested at float32 precision).
"""

from __future__ import annotations

import inspect
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count

import torch
from transformers import DynamicCache, Qwen2Model

from rfprm_tts.errors import RfprmError
from rfprm_tts.prm.protocol import Forwarded, InputFormat, Rows, positions
from rfprm_tts.prm.runners.batched import TransformersRunner, attention_of, probabilities
from rfprm_tts.prm.runners.tree_mask import for_layers
from rfprm_tts.runtime.torch_utils import length_batches, packed_rows

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [kv_heads, tokens, head_dim]
# transformers 5.24 renamed the decoder's `past_key_values` argument to `cache`
CACHE_ARGUMENT = "cache" if "cache" in inspect.signature(Qwen2Model.forward).parameters else "past_key_values"


@dataclass(eq=False)
class Node:
    """A scored token segment that continues its parent's tokens."""

    parent: Node | None
    segment: tuple[int, ...]
    end: int  # tokens from the start of the input to the end of this segment
    question: str
    start: int  # where the question's answer starts (tokens before it hold no step)
    id: int = field(default_factory=count().__next__)
    kv: KV = field(default_factory=list)
    rows: Rows = field(default_factory=list)  # outputs at the positions the format reads
    children: set[Node] = field(default_factory=set)
    released: bool = False

    @property
    def key(self) -> tuple:
        return (self.parent.id if self.parent else None, self.segment)

    def chain(self) -> list[Node]:
        """Nodes from the root down to this one."""
        nodes: list[Node] = []
        node: Node | None = self
        while node is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]


# Siblings share a forward row up to this many new tokens, so their parent's keys/values are
# copied and read once; past it, the dense mask's attention between siblings (computed, then
# masked) costs more than the shared reads save.
SIBLING_ROW_TOKENS = 512


def sibling_rows(nodes: list[Node], max_tokens: int = SIBLING_ROW_TOKENS) -> list[list[Node]]:
    """Nodes with the same parent, packed into rows of at most `max_tokens` new tokens (a
    longer segment gets a row of its own)."""
    families: dict[int | None, list[Node]] = {}
    for node in nodes:
        families.setdefault(node.parent.id if node.parent else None, []).append(node)
    return [
        [family[i] for i in row]
        for family in families.values()
        for row in packed_rows([len(n.segment) for n in family], max_tokens)
    ]


@dataclass(eq=False)
class _Pending:
    """A step boundary first seen in this call; becomes a Node if kept."""

    parent: Node | _Pending | None
    segment: tuple[int, ...]
    end: int
    question: str
    start: int
    children: int = 0
    leaf: bool = False  # some input ends here
    head: bool = False  # the question's template: kept apart so every trajectory shares it

    @property
    def kept(self) -> bool:
        """Worth a node of its own: an input's end, a branch point, or the question."""
        return self.leaf or self.head or self.children >= 2


class IncrementalRunner(TransformersRunner):
    """The transformers runner, reusing the keys/values of prefixes it has run. A CachingRunner:
    the scorer passes on `release` and `forget`."""

    def __init__(self, model: torch.nn.Module, *, cache_max_tokens: int = 65536, **options):
        super().__init__(model, **options)
        if attention_of(model) not in ("sdpa", "eager", ""):
            raise RfprmError(
                f"the incremental runner masks siblings with a tree-shaped mask, which {attention_of(model)} cannot "
                "take: load its model with attn_implementation 'sdpa' (prm.attention does so)"
            )
        self.cache_max_tokens = cache_max_tokens
        self.peak_cached_tokens = 0  # the most held at once, before eviction: for sizing cache_max_tokens
        self._nodes: OrderedDict[tuple, Node] = OrderedDict()  # least recently used first
        self._holders: Counter[str] = Counter()  # solves of each question under way
        self._holders_lock = threading.Lock()  # taken inside _lock, or alone: a hold never waits for a forward pass

    @property
    def cached_tokens(self) -> int:
        return sum(len(node.segment) for node in self._nodes.values())

    def run(self, fmt: InputFormat, questions: list[str], inputs: list[list[int]]) -> Forwarded:
        starts = {q: fmt.answer_start(q) for q in set(questions)}
        with self._lock:
            leaves = []
            pending: dict[tuple[int, tuple[int, ...]], _Pending] = {}
            for question, ids in zip(questions, inputs):
                leaves.append(self._walk(fmt, ids, question, starts[question], pending))
            made, padded = self._run(fmt, [p for p in pending.values() if p.kept])
            scores, tokens = [], []
            counted: set[int] = set()
            new_nodes = {id(n) for n in made.values()}
            for leaf in leaves:
                chain = (made[id(leaf)] if isinstance(leaf, _Pending) else leaf).chain()
                for n in chain:
                    self._nodes.move_to_end(n.key)
                new = [n for n in chain if id(n) in new_nodes and id(n) not in counted]
                counted.update(id(n) for n in new)
                scores.append([row for n in chain for row in n.rows])
                tokens.append(sum(len(n.segment) for n in new))
            self.peak_cached_tokens = max(self.peak_cached_tokens, self.cached_tokens)
            self._evict()
        return Forwarded(scores, tokens, padded)

    def hold(self, question: str) -> None:
        with self._holders_lock:
            self._holders[question] += 1

    def _shared(self, question: str) -> bool:
        """Does another solve than this one hold the question?"""
        with self._holders_lock:
            return self._holders[question] > 1

    def _let_go(self, question: str) -> bool:
        """This solve lets go of the question: was another still holding it?"""
        with self._holders_lock:
            shared = self._holders[question] > 1
            self._holders[question] -= 1
            if self._holders[question] <= 0:
                del self._holders[question]
            return shared

    def release(self, fmt: InputFormat, question: str, inputs: Sequence[Sequence[int]]) -> None:
        """The strategy dropped these inputs: free their prefixes that no kept input shares
        (nothing, while another solve holds the question)."""
        start = fmt.answer_start(question)
        with self._lock:  # then the holders: no solve may start scoring between the check and the freeing
            if self._shared(question):
                return
            for ids in inputs:
                node = self._find(fmt, ids, start)
                if node is not None:
                    node.released = True
                    while node is not None and node.released and not node.children:
                        parent = node.parent
                        self._remove(node)
                        node = parent

    def forget(self, question: str) -> None:
        """Free everything cached for a question (its solve is over; the last one, when several
        held it)."""
        with self._lock:
            if self._let_go(question):
                return
            for node in [n for n in self._nodes.values() if n.question == question and n.parent is None]:
                self._remove_tree(node)

    # -- the tree ---------------------------------------------------------------------------

    def _cached_prefix(self, ids: Sequence[int], cuts: list[int]) -> tuple[Node | None, int]:
        """The deepest cached node the input's tokens match, and how many cuts it covers.
        Any cut may end a cached segment (a segment can span several steps)."""
        node, begin, covered = None, 0, 0
        for i, cut in enumerate(cuts):
            found = self._nodes.get((node.id if node else None, tuple(ids[begin:cut])))
            if found is not None:
                node, begin, covered = found, cut, i + 1
        return node, covered

    def _find(self, fmt: InputFormat, ids: Sequence[int], start: int) -> Node | None:
        """The cached node that ends exactly at the input's last step, if any."""
        cuts = fmt.cuts(ids, start)
        node, covered = self._cached_prefix(ids, cuts)
        return node if covered == len(cuts) else None

    def _walk(
        self,
        fmt: InputFormat,
        ids: Sequence[int],
        question: str,
        start: int,
        pending: dict[tuple[int, tuple[int, ...]], _Pending],
    ) -> Node | _Pending:
        """Follow the cached tree as far as the input matches, then add the rest as pending
        boundaries (shared with other inputs of this call). Returns the input's last node."""
        cuts = fmt.cuts(ids, start)
        node: Node | _Pending | None
        node, covered = self._cached_prefix(ids, cuts)
        begin = node.end if node else 0
        for cut in cuts[covered:]:
            key = (id(node), tuple(ids[begin:cut]))
            if key not in pending:
                pending[key] = _Pending(node, key[1], cut, question, start, head=cut == cuts[0])
                if isinstance(node, _Pending):
                    node.children += 1
            node, begin = pending[key], cut
        if node is None:  # only without cuts
            raise RfprmError(f"{type(fmt).__name__}.cuts gave no cut; it must give at least the answer's start")
        if isinstance(node, _Pending):
            node.leaf = True
        return node

    def _run(self, fmt: InputFormat, kept: list[_Pending]) -> tuple[dict[int, Node], int]:
        """Run the model over the kept pending nodes, parents before children, batched."""
        made: dict[int, Node] = {}
        todo = list(kept)
        padded = 0
        while todo:
            ready, nodes, later = [], [], []
            for p in todo:
                parent, segment = self._anchor(p)
                if isinstance(parent, _Pending):
                    if id(parent) not in made:
                        later.append(p)  # its parent runs in this round
                        continue
                    parent = made[id(parent)]
                ready.append(p)
                nodes.append(Node(parent, segment, p.end, p.question, p.start))
            rows = sibling_rows(nodes, min(SIBLING_ROW_TOKENS, self.max_batch_tokens))
            lengths = [sum(len(n.segment) for n in row) for row in rows]
            for batch in length_batches(lengths, self.batch_size, self.max_batch_tokens):
                padded += self._extend(fmt, [rows[i] for i in batch])
            for p, node in zip(ready, nodes):
                made[id(p)] = node
                if node.parent is not None:
                    node.parent.children.add(node)
                self._nodes[node.key] = node
            todo = later
        return made, padded

    @staticmethod
    def _anchor(p: _Pending) -> tuple[Node | _Pending | None, tuple[int, ...]]:
        """The nearest kept (or cached) ancestor of a kept pending node, and the tokens
        from there to its end."""
        segment, parent = p.segment, p.parent
        while isinstance(parent, _Pending) and not parent.kept:
            segment, parent = parent.segment + segment, parent.parent
        return parent, segment

    @torch.inference_mode()
    def _extend(self, fmt: InputFormat, rows: list[list[Node]]) -> int:
        """One forward pass for new segments. A row holds siblings: their parent's cached
        keys/values once (left-padded to the batch's longest past), then the segments end to
        end, each attending to the past and causally to itself. Fills each node's kv and rows;
        returns the padding it ran."""
        past = [row[0].parent.end if row[0].parent else 0 for row in rows]
        width_past = max(past)
        width_new = max(sum(len(n.segment) for n in row) for row in rows)
        input_ids = torch.full((len(rows), width_new), self.pad_id, dtype=torch.long)
        position_ids = torch.zeros((len(rows), width_new), dtype=torch.long)
        # True where a query (new token) may read a key (past, then new); a padding query
        # reads itself, so no row of the mask is empty (sdpa would return NaN there)
        mask = torch.zeros((len(rows), 1, width_new, width_past + width_new), dtype=torch.bool)
        mask[:, 0, :, width_past:] = torch.eye(width_new, dtype=torch.bool)
        for r, (row, p) in enumerate(zip(rows, past)):
            offset = 0
            for node in row:
                n = len(node.segment)
                span = slice(offset, offset + n)
                input_ids[r, span] = torch.tensor(node.segment)
                position_ids[r, span] = torch.arange(p, p + n)
                mask[r, 0, span, width_past - p : width_past] = True
                mask[r, 0, span, width_past + offset : width_past + offset + n] = torch.ones(
                    n, n, dtype=torch.bool
                ).tril()
                offset += n
        model = self._loaded_model()
        past_positions = torch.stack([torch.arange(-width_past, 0) + p for p in past]).clamp(min=0)
        masks = for_layers(model, mask, position_ids, torch.cat([past_positions, position_ids], dim=1))
        cache = DynamicCache(ddp_cache_data=self._past_kv(rows, width_past)) if width_past else DynamicCache()
        logits = model(
            input_ids=input_ids.to(self.device),
            attention_mask=masks,
            position_ids=position_ids.to(self.device),
            use_cache=True,
            **{CACHE_ARGUMENT: cache},
        )[0]
        probs = probabilities(logits).cpu()
        for r, row in enumerate(rows):
            offset = width_past
            for node in row:
                n = len(node.segment)
                # transformers types a layer's keys and values Optional and its layers a union with linear-attention
                # ones (which have none); this cache's layers are DynamicLayers that have just run: both are tensors
                node.kv = [
                    (
                        layer.keys[r, :, offset : offset + n].clone(),  # type: ignore[union-attr,index]
                        layer.values[r, :, offset : offset + n].clone(),  # type: ignore[union-attr,index]
                    )
                    for layer in cache.layers
                ]
                # the positions the format reads, in the segment's own coordinates
                begin = node.end - n
                found = positions(fmt, node.segment, max(0, node.start - begin))
                node.rows = probs[r, [offset - width_past + i for i in found]].tolist()
                offset += n
        return len(rows) * width_new - sum(len(n.segment) for row in rows for n in row)

    def _past_kv(self, rows: list[list[Node]], width: int) -> KV:
        """Each row's parent chain keys/values, left-padded with zeros to `width` tokens."""
        parents = [row[0].parent for row in rows]
        chains: dict[int, KV] = {}
        for parent in parents:
            if parent is not None and parent.id not in chains:
                segments = [n.kv for n in parent.chain()]
                chains[parent.id] = [
                    (
                        torch.cat([s[layer][0] for s in segments], dim=1),
                        torch.cat([s[layer][1] for s in segments], dim=1),
                    )
                    for layer in range(len(segments[0]))
                ]
        some = next(iter(chains.values()))
        layers = []
        for layer, (k0, v0) in enumerate(some):
            keys = k0.new_zeros((len(rows), k0.shape[0], width, k0.shape[2]))
            values = v0.new_zeros((len(rows), v0.shape[0], width, v0.shape[2]))
            for r, parent in enumerate(parents):
                if parent is not None:
                    k, v = chains[parent.id][layer]
                    keys[r, :, width - k.shape[1] :] = k
                    values[r, :, width - v.shape[1] :] = v
            layers.append((keys, values))
        return layers

    def _remove(self, node: Node) -> None:
        self._nodes.pop(node.key, None)
        if node.parent is not None:
            node.parent.children.discard(node)

    def _remove_tree(self, node: Node) -> None:
        for child in list(node.children):
            self._remove_tree(child)
        self._remove(node)

    def _evict(self) -> None:
        """Drop least recently used leaves until the cache holds at most cache_max_tokens."""
        total = self.cached_tokens
        while total > self.cache_max_tokens:
            leaf = next(n for n in self._nodes.values() if not n.children)
            total -= len(leaf.segment)
            self._remove(leaf)
