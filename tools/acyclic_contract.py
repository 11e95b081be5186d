"""An import-linter contract: no import cycle among the modules of a package.

import-linter has no such contract type built in; ``make test`` loads this one through
``contract_types`` in ``.importlinter``. A cycle counts whatever its path (function-level
imports included), so "import inside a function to dodge the cycle" is still reported.
"""
from __future__ import annotations

from typing import Any

import grimp
from importlinter import Contract, ContractCheck, fields, output


class AcyclicContract(Contract):
    """``packages``: each package whose modules must not import each other in a circle."""

    type_name = "acyclic"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        cycles: list[list[str]] = []
        seen: set[frozenset[str]] = set()
        packages: list[str] = list(self.packages)  # type: ignore[call-overload]
        for package in packages:
            modules = {package} | set(graph.find_descendants(package))
            for importer in sorted(modules):
                for imported in sorted(graph.find_modules_directly_imported_by(importer) & modules):
                    chain = graph.find_shortest_chain(importer=imported, imported=importer)
                    if chain is None:
                        continue
                    key = frozenset(chain)
                    if key not in seen:
                        seen.add(key)
                        cycles.append([importer, *chain])
        return ContractCheck(kept=not cycles, metadata={"cycles": cycles})

    def render_broken_contract(self, check: ContractCheck) -> None:
        cycles: Any = check.metadata["cycles"]
        for cycle in cycles:
            output.print_error(" -> ".join(cycle))
            output.new_line()
