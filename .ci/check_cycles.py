"""No import cycles among loadkit's modules (run by .ci/run before the tests).

Why a script: import-linter's contracts say which layer may import which, and
its ``acyclic_siblings`` contract looks only at siblings, so a cycle between a
package and one of its own modules passes it. Here every module is a node and
every import an edge (those under ``if TYPE_CHECKING:`` too: a cycle of type
names is still two modules that cannot be read, changed or tested one without
the other), and any strongly connected group of two or more modules is a
cycle. The graph is grimp's, the library import-linter is built on.

Prints each cycle as a chain of imports with their line numbers, exits 1 if
there is one, 0 otherwise.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "loadkit"


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> Iterator[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit): each group of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    yield sorted(group)


def describe(graph: grimp.ImportGraph, group: list[str]) -> list[str]:
    """One cycle through the group's first module, each import with where it is written."""
    members = set(group)
    first = group[0]
    # the shortest way back to ``first`` from any module it imports inside the group
    chains = []
    for nxt in sorted(graph.find_modules_directly_imported_by(first) & members):
        chain = graph.find_shortest_chain(importer=nxt, imported=first)
        if chain is not None:
            chains.append((first, *chain))
    cycle = min(chains, key=len)
    lines = []
    for importer, imported in itertools.pairwise(cycle):
        details = graph.get_import_details(importer=importer, imported=imported)
        where = ", ".join(f"line {d['line_number']}" for d in details) or "?"
        lines.append(f"    {importer} imports {imported} ({where})")
    return lines


def main() -> int:
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(PACKAGE, cache_dir=None)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    cycles = [g for g in strongly_connected(edges) if len(g) > 1]
    for group in cycles:
        print(f"import cycle among {len(group)} modules: {', '.join(group)}")
        print("\n".join(describe(graph, group)))
    if cycles:
        print(f"{len(cycles)} import cycle(s) in {PACKAGE}/: break each by moving the shared part down a layer "
              "or naming it with a typing.Protocol in the lower module")
        return 1
    print(f"no import cycles among {len(edges)} modules of {PACKAGE}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
