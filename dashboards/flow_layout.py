"""A layered (Sugiyama-style) layout for the flow graph: pure and deterministic.

1. Break cycles by reversing the few edges that point backwards in a greedy
   (Eades-Lin-Smyth) order, so "flow direction" is well defined.
2. Longest-path layering: a node sits one layer right of its furthest predecessor;
   pure sources are then pulled right next to their first consumer, so a lone producer
   does not draw an edge across the whole picture.
3. Edges spanning several layers get dummy points, one per layer they cross.
4. Barycentric ordering: alternate down and up sweeps order each layer by the mean
   position of its neighbours in the previous layer; the ordering with the fewest
   crossings wins, then swapping neighbours removes what crossings it can.

The same graph always gives the same picture (ties break on the input order, then ids),
so the graph does not jump around on every live refresh.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]
EdgeKey = tuple[str, str]

_DUMMY = "\x00dummy"


@dataclass(frozen=True)
class Layout:
    positions: dict[str, Point]
    layers: list[list[str]]
    edge_points: dict[EdgeKey, list[Point]]  # source, bends..., target (in the edge's own direction)
    crossings: int
    reversed_edges: frozenset[EdgeKey]
    height: float = 0.0  # distance between the highest and the lowest point, in y units


def _unique_edges(nodes: Sequence[str], edges: Sequence[EdgeKey]) -> list[EdgeKey]:
    known = set(nodes)
    seen: set[EdgeKey] = set()
    result = []
    for source, target in edges:
        if source == target or source not in known or target not in known or (source, target) in seen:
            continue
        seen.add((source, target))
        result.append((source, target))
    return result


def break_cycles(nodes: Sequence[str], edges: Sequence[EdgeKey]) -> tuple[list[EdgeKey], set[EdgeKey]]:
    """Eades-Lin-Smyth greedy ordering: peel sinks to the right and sources to the left,
    otherwise take the node with the most (out - in) edges; the edges pointing backwards
    in that order are reversed. Few edges get reversed (a DFS reverses many once a
    single cycle runs through the graph); ties break on the input order."""
    order = {n: i for i, n in enumerate(nodes)}
    successors: dict[str, set[str]] = defaultdict(set)
    predecessors: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        successors[source].add(target)
        predecessors[target].add(source)
    remaining = dict.fromkeys(nodes)  # ordered set
    left: list[str] = []
    right: list[str] = []

    def remove(node: str) -> None:
        del remaining[node]
        for child in successors[node]:
            predecessors[child].discard(node)
        for parent in predecessors[node]:
            successors[parent].discard(node)

    while remaining:
        changed = True
        while changed:
            changed = False
            for node in [n for n in remaining if not successors[n]]:
                remove(node)
                right.append(node)
                changed = True
            for node in [n for n in remaining if not predecessors[n]]:
                if node in remaining:
                    remove(node)
                    left.append(node)
                    changed = True
        if remaining:
            pick = max(remaining, key=lambda n: (len(successors[n]) - len(predecessors[n]), -order[n]))
            remove(pick)
            left.append(pick)
    position = {n: i for i, n in enumerate(left + list(reversed(right)))}
    back_edges = {(s, t) for s, t in edges if position[s] > position[t]}
    acyclic = [(t, s) if (s, t) in back_edges else (s, t) for s, t in edges]
    return _unique_edges(nodes, acyclic), back_edges


def assign_layers(nodes: Sequence[str], dag_edges: Sequence[EdgeKey]) -> dict[str, int]:
    order = {n: i for i, n in enumerate(nodes)}
    predecessors: dict[str, list[str]] = defaultdict(list)
    successors: dict[str, list[str]] = defaultdict(list)
    indegree = {n: 0 for n in nodes}
    for source, target in dag_edges:
        predecessors[target].append(source)
        successors[source].append(target)
        indegree[target] += 1
    ready = sorted((n for n in nodes if indegree[n] == 0), key=order.__getitem__)
    topological: list[str] = []
    while ready:
        node = ready.pop(0)
        topological.append(node)
        for child in successors[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
                ready.sort(key=order.__getitem__)
    layer: dict[str, int] = {}
    for node in topological:
        layer[node] = max((layer[p] + 1 for p in predecessors[node]), default=0)
    # Pull sources right, next to their nearest successor (last to first keeps it stable).
    for node in reversed(topological):
        if not predecessors[node] and successors[node]:
            layer[node] = max(0, min(layer[c] for c in successors[node]) - 1)
    return layer


def count_crossings(upper: Sequence[str], lower: Sequence[str], links: Sequence[EdgeKey]) -> int:
    """Crossings between two adjacent layers: inversions of the lower ends when links are
    sorted by their upper ends (a Fenwick tree keeps it O(E log V))."""
    upper_pos = {n: i for i, n in enumerate(upper)}
    lower_pos = {n: i for i, n in enumerate(lower)}
    pairs = sorted((upper_pos[u], lower_pos[v]) for u, v in links if u in upper_pos and v in lower_pos)
    size = len(lower) + 1
    tree = [0] * (size + 1)
    crossings = 0
    seen = 0
    for _, position in pairs:
        # links seen so far whose lower end is strictly right of this one cross it
        index, not_greater = position + 1, 0
        while index > 0:
            not_greater += tree[index]
            index -= index & -index
        crossings += seen - not_greater
        index = position + 1
        while index <= size:
            tree[index] += 1
            index += index & -index
        seen += 1
    return crossings


def _total_crossings(layers: list[list[str]], links_between: list[list[EdgeKey]]) -> int:
    return sum(count_crossings(layers[i], layers[i + 1], links_between[i]) for i in range(len(layers) - 1))


def _reorder(layer: list[str], neighbours: dict[str, list[str]], reference: list[str]) -> list[str]:
    position = {n: i for i, n in enumerate(reference)}
    current = {n: i for i, n in enumerate(layer)}

    def barycentre(node: str) -> float:
        placed = [position[n] for n in neighbours.get(node, ()) if n in position]
        if not placed:
            # no neighbour on that side: keep the node where it is, proportionally
            return current[node] * (len(reference) / max(len(layer), 1))
        return sum(placed) / len(placed)

    return sorted(layer, key=lambda n: (barycentre(n), current[n]))


def _pair_crossings(left: list[int], right: list[int]) -> int:
    """Crossings between the edges of two neighbours when ``left`` stays left of
    ``right`` (their neighbours' positions in one adjacent layer)."""
    return sum(1 for a in left for b in right if a > b)


def _transpose(layers: list[list[str]], upward: dict[str, list[str]], downward: dict[str, list[str]],
               rounds: int = 4) -> None:
    """Swap neighbours in a layer while that removes crossings (in place)."""
    for _ in range(rounds):
        improved = False
        for i, layer in enumerate(layers):
            above = {n: k for k, n in enumerate(layers[i - 1])} if i > 0 else {}
            below = {n: k for k, n in enumerate(layers[i + 1])} if i < len(layers) - 1 else {}

            def sides(node: str) -> tuple[list[int], list[int]]:
                return ([above[n] for n in upward.get(node, ()) if n in above],
                        [below[n] for n in downward.get(node, ()) if n in below])

            for j in range(len(layer) - 1):
                (u_up, u_down), (v_up, v_down) = sides(layer[j]), sides(layer[j + 1])
                kept = _pair_crossings(u_up, v_up) + _pair_crossings(u_down, v_down)
                swapped = _pair_crossings(v_up, u_up) + _pair_crossings(v_down, u_down)
                if swapped < kept:
                    layer[j], layer[j + 1] = layer[j + 1], layer[j]
                    improved = True
        if not improved:
            break


def layered_layout(
    nodes: Sequence[str], edges: Sequence[EdgeKey], sweeps: int = 12, refine: bool = True,
    x_gap: float = 1.0, y_gap: float = 1.0, dummy_gap: float = 0.35,
) -> Layout:
    """Positions for ``nodes`` (x = layer, flow left to right; y = order in the layer,
    centred on 0) and polyline points for every edge."""
    nodes = list(dict.fromkeys(nodes))
    edges = _unique_edges(nodes, edges)
    dag_edges, back_edges = break_cycles(nodes, edges)
    layer_of = assign_layers(nodes, dag_edges)

    # Split long edges into unit-length links through dummy nodes.
    chains: dict[EdgeKey, list[str]] = {}
    links: list[EdgeKey] = []
    dummy_layer: dict[str, int] = {}
    for source, target in dag_edges:
        chain = [source]
        for step in range(layer_of[source] + 1, layer_of[target]):
            dummy = f"{_DUMMY}:{source}->{target}:{step}"
            dummy_layer[dummy] = step
            chain.append(dummy)
        chain.append(target)
        chains[(source, target)] = chain
        links.extend(zip(chain, chain[1:]))

    depth = max([*layer_of.values(), *dummy_layer.values()], default=-1) + 1
    layers: list[list[str]] = [[] for _ in range(depth)]
    for node in nodes:  # input order is the initial order
        layers[layer_of[node]].append(node)
    for dummy, step in dummy_layer.items():  # dict order: by edge, then step
        layers[step].append(dummy)

    upward: dict[str, list[str]] = defaultdict(list)
    downward: dict[str, list[str]] = defaultdict(list)
    for upper, lower in links:
        downward[upper].append(lower)
        upward[lower].append(upper)
    index_of_layer = {n: i for i, layer in enumerate(layers) for n in layer}
    links_between: list[list[EdgeKey]] = [[] for _ in range(max(depth - 1, 0))]
    for upper, lower in links:
        links_between[index_of_layer[upper]].append((upper, lower))

    best = [list(layer) for layer in layers]
    best_crossings = _total_crossings(best, links_between)
    for sweep in range(sweeps):
        if best_crossings == 0:
            break
        if sweep % 2 == 0:
            for i in range(1, depth):
                layers[i] = _reorder(layers[i], upward, layers[i - 1])
        else:
            for i in range(depth - 2, -1, -1):
                layers[i] = _reorder(layers[i], downward, layers[i + 1])
        crossings = _total_crossings(layers, links_between)
        if crossings < best_crossings:
            best, best_crossings = [list(layer) for layer in layers], crossings

    if refine and best_crossings:
        _transpose(best, upward, downward)
        best_crossings = _total_crossings(best, links_between)

    # A bend point needs less room than a labelled node: long edges stay bundled and
    # the nodes keep their spacing.
    coordinates: dict[str, Point] = {}
    extent = 0.0
    for i, layer in enumerate(best):
        slots = [dummy_gap if node.startswith(_DUMMY) else 1.0 for node in layer]
        height = sum(slots) - (slots[0] + slots[-1]) / 2 if layer else 0.0
        extent = max(extent, height)
        y = height / 2
        for position, node in enumerate(layer):
            if position:
                y -= (slots[position - 1] + slots[position]) / 2
            coordinates[node] = (i * x_gap, y * y_gap)

    edge_points: dict[EdgeKey, list[Point]] = {}
    for source, target in edges:
        if (source, target) in back_edges:
            points = list(reversed([coordinates[n] for n in chains[(target, source)]]))
        else:
            points = [coordinates[n] for n in chains[(source, target)]]
        edge_points[(source, target)] = points
    real_layers = [[n for n in layer if not n.startswith(_DUMMY)] for layer in best]
    return Layout(
        positions={n: coordinates[n] for n in nodes},
        layers=real_layers,
        edge_points=edge_points,
        crossings=best_crossings,
        reversed_edges=frozenset(back_edges),
        height=extent * y_gap,
    )
