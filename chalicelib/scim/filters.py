"""Filter -> DynamoDB access plan: key lookups where the filter pins a key, else the tenant's partition.

scim2-models parses and validates the filter; :class:`KeyPlanner` walks its
syntax tree and says which keys a matching resource must have:

* ``id eq "x"``                 -> GetItem (tenant, x)
* ``userName eq "x"`` (Users)   -> Query ``users.by_user_name`` (tenant#x) + Query ``users.by_email``
                                   (a user never given a userName shows its email; this tenant's hits only)
* ``A and B``                   -> the plan of the first term that pins a key
* ``A or B``                    -> the union of both plans, if both pin keys
* anything else (``ne``, ``co``, ``sw``, ``ew``, ``gt``..., ``pr``, ``not``,
  ``emails[...]``, other attributes) -> page through the tenant's partition
  (Query on ``tenant_id``, 1 request per 1 MB page) and filter in memory.

Whatever the plan, every candidate is then matched against the whole
filter in memory, so a plan only has to be a superset.  Never a Scan.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from scim2_models.path import Comparison, CompareOperator, FilterNode, FilterVisitor, LogicalExpr, LogicalOperator

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:user"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:group"


class Lookup(NamedTuple):
    """One key lookup: ``kind`` is ``id`` (GetItem) or ``user_name`` (Query by_user_name + by_email)."""

    kind: str
    value: str


class KeyPlanner(FilterVisitor["tuple[Lookup, ...] | None"]):
    """The key lookups that cover every resource a filter can match (None: all of the tenant's)."""

    def __init__(self, resource: str) -> None:
        self.resource = resource  # "User" | "Group"
        self._urn = CORE_USER if resource == "User" else CORE_GROUP

    def visit_comparison(self, node: Comparison) -> tuple[Lookup, ...] | None:
        path = node.attr_path
        if node.op != CompareOperator.eq or path.sub_attr or not isinstance(node.value, str):
            return None
        if path.uri and path.uri.lower() != self._urn:
            return None
        attr = path.attr.lower()
        if attr == "id":
            return (Lookup("id", node.value),)
        if attr == "username" and self.resource == "User":
            return (Lookup("user_name", node.value.strip().lower()),)
        return None

    def visit_logical_expr(self, node: LogicalExpr) -> tuple[Lookup, ...] | None:
        plans = [self.visit(term) for term in node.terms]
        if node.op == LogicalOperator.and_:
            pinned = [p for p in plans if p is not None]
            return min(pinned, key=len) if pinned else None
        if any(p is None for p in plans):
            return None
        return tuple(dict.fromkeys(lookup for p in plans for lookup in p))  # type: ignore[union-attr]

    def visit_present(self, node: Any) -> None:
        return None

    def visit_not(self, node: Any) -> None:
        return None

    def visit_value_path(self, node: Any) -> None:
        return None


def plan(ast: FilterNode | None, resource: str) -> tuple[Lookup, ...] | None:
    """The access plan of a parsed filter (no filter: the whole partition)."""
    if ast is None:
        return None
    return KeyPlanner(resource).visit(ast)
