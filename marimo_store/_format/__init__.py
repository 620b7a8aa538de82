"""The on-disk format of a store: the only code that knows its layout.

Every directory and file name, path rule, record type (entry, access,
tombstone, segment header, close record), the record framing and the
naming of objects and quarantined files live here, one module per noun:

- `layout`: the store directory, `format.json`, the generated files, lock
  and quarantine paths (docs/format.md §2, §3.6, §10.6);
- `framing`: how a record is framed and its payload encoded (§5, §6.1);
- `records`: entry, access and tombstone records (§6.4-§6.7);
- `segments`: segment names, the header and close records (§3.2, §6.3, §6.8);
- `keyindex`: the key index that ends a sealed segment (§16);
- `objects`: object names and listing (§3.3, §8);
- `names`: the patterns of durable names that maintenance recognises.

The invariant: no module outside this package spells a layout name
(`tests/test_format_owner.py` checks it), so a change of layout is a change
here and in docs/format.md, nowhere else.
"""
