"""The names of an execution key's components, and the key scheme's version.

A call's key has two parts (see DESIGN.md §2). `block_id` groups the runs of
one function for cleanup: the hash of its own code, or the `name` the user
gave. `module_hash` identifies the computation: the hash of *components*,
each a named digest that `explain()` can compare one by one:

- `code`: the function's own code;
- `function:<name>` / `class:<name>`: the code of each function or class of
  the same module that it uses, transitively (helpers of helpers);
- `global:<name>` / `cell:<name>`: the value of each global or closure
  variable it (or a helper) reads;
- `arg:<name>`: each argument, bound to its parameter name with defaults
  applied, so `f(1, b=2)` and `f(a=1, b=2)` are one key;
- `version`: the user's `version=`; `module:<name>`: with `pin_modules`, the
  installed version of each package it uses.

`KEY_SCHEME` versions the formula that turns components into `module_hash`
(and the encodings behind each digest). It is mixed into `module_hash` as
a component of its own, so a key of one scheme never equals a key of
another: changing the formula makes every stored entry a clean miss, never
a clash with an entry computed another way. Invariant: bump it whenever a
change would give any call a different key.

Only constants live here, imported by the hashing modules and by `cache`,
so that splitting hashing into modules creates no import loop.
"""

from __future__ import annotations

KEY_SCHEME = 1
"""The version of the key scheme; bump it when any call's key would change."""

SCHEME = "scheme"
CODE = "code"
VERSION = "version"
FUNCTION = "function:"
CLASS = "class:"
GLOBAL = "global:"
CELL = "cell:"
ARGUMENT = "arg:"
MODULE = "module:"
