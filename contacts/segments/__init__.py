"""Segments: a condition registry, the built-in conditions and the compiler to one SQL query.

Importing any module of this package registers the built-in conditions, so higher apps
can `from contacts.segments.registry import segment_conditions` in their ready() and add
their own next to them.
"""

from contacts.segments import conditions

conditions.register_built_in()
