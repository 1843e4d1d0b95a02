"""Whole-document settings shared with others (lifecycle rules, CORS rules, policy statements):
converge only the items this stage owns, keep everyone else's as they are."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Item = dict[str, Any]


def merge_owned(
    existing: Sequence[Item],
    desired: Sequence[Item],
    *,
    key: str,
    owns: Callable[[str], bool],
    normalize: Callable[[Item], Any],
) -> list[Item] | None:
    """The full list to write back when our items differ from what is there, else None.

    An item is ours when `owns(item[key])`. Items of other stages or hand-made ones are kept
    in place; ours that are no longer desired are dropped."""
    current = sorted((normalize(i) for i in existing if owns(str(i.get(key, "")))), key=repr)
    wanted = sorted((normalize(i) for i in desired), key=repr)
    if current == wanted:
        return None
    others = [item for item in existing if not owns(str(item.get(key, "")))]
    return others + list(desired)
