"""`push`, `pull`, `info --remote`, `cleanup --remote`: a store's remote
(docs/remote.md).

`push` copies the local store's entries that the remote lacks to it; `pull`
the other way (each with a progress bar, or one JSON document). `info
--remote` counts the remote's entries, segments and objects; `cleanup
--remote` runs its object GC under a lease (grace: the store's
`object_grace_seconds`); `verify --remote` (in `_check.py`, beside the
local `verify` whose output it shares) checks every byte of it. The
remote is `--remote URL`, else the store's configured `remote`.
Credentials come from the environment, as for the store itself.
"""

from __future__ import annotations

from marimo_store._errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from marimo_store._entry import EntryMetadata
    from marimo_store._protocol import Store
    from marimo_store.cli import Register
    from marimo_store.cli._output import Output
    from marimo_store.remote import RemoteStore
    from marimo_store.store import FsPersistentStore


RECHECK_SECONDS = 60.0
"""How long `cleanup --remote` waits before its second listing (`_gc.py`)."""


def register(add: Register) -> None:
    for name, run, help_text in (
        ("push", run_push, "copy the entries the remote lacks to it"),
        ("pull", run_pull, "copy the remote's entries this store lacks here"),
    ):
        command = add(name, help=help_text)
        add_remote_option(command, "the remote")
        command.set_defaults(run=run)


def add_remote_option(command: argparse.ArgumentParser, what: str) -> None:
    """`--remote [URL]`: work on `what` of the remote (without URL: the store's `remote`)."""
    command.add_argument(
        "--remote",
        nargs="?",
        const="",
        metavar="URL",
        help=f"{what} (URL default: the store's configured remote)",
    )


def open_remote(args: argparse.Namespace) -> tuple[FsPersistentStore, RemoteStore]:
    from marimo_store.cli._target import open_store  # noqa: PLC0415
    from marimo_store.remote import RemoteStore  # noqa: PLC0415

    local = open_store(args.store)
    url = args.remote or local.options.remote
    if not url:
        raise ConfigError("no remote: give --remote URL or set `remote` for the store")
    options = local.options
    remote = RemoteStore(
        url,
        inline_threshold=options.inline_threshold,
        signing_key=options.signing_key,
        verify_signatures=options.verify_signatures,
        trusted_signers=options.trusted_signers,
    )
    return local, remote


def _copy(
    out: Output, what: str, missing: list[EntryMetadata], source: Store, target: Store
) -> tuple[int, int]:
    """Copy `missing` runs from `source` to `target`; (copied, unloadable)."""
    from marimo_store.tiered import fill_copy  # noqa: PLC0415

    copied = failed = 0
    with out.progress(what) as update:
        for done, metadata in enumerate(missing, 1):
            key = metadata.key
            entry = source.get(key, exact_match_created_at=True, version_policy="ignore")
            if entry is None:
                failed += 1
            else:
                target.put(fill_copy(entry, metadata))
                copied += 1
            update(done, len(missing))
    return copied, failed


def _transfer(args: argparse.Namespace, out: Output, *, push: bool) -> int:
    local, remote = open_remote(args)
    source, target = (local, remote) if push else (remote, local)
    there = {metadata.key for metadata in target.entries()}
    missing = [metadata for metadata in source.entries() if metadata.key not in there]
    copied, failed = _copy(out, "pushing" if push else "pulling", missing, source, target)
    document = {
        "remote": str(remote.remote),
        "copied": copied,
        "unloadable": failed,
        "already_there": len(source.entries()) - len(missing),
        "uploaded_object_bytes": remote.objects.uploaded_bytes,
    }
    if out.json_mode:
        out.document(document)
    else:
        verb = "pushed" if push else "pulled"
        out.line(
            f"{verb} {copied} entries ({document['already_there']} already there, "
            f"{failed} unloadable); {remote.objects.uploaded_bytes} object bytes uploaded"
        )
    return 0


def run_push(args: argparse.Namespace, out: Output) -> int:
    return _transfer(args, out, push=True)


def run_pull(args: argparse.Namespace, out: Output) -> int:
    return _transfer(args, out, push=False)


def run_remote_info(args: argparse.Namespace, out: Output) -> int:
    from marimo_store._format.keys import OBJECTS_PREFIX, SEGMENTS_PREFIX  # noqa: PLC0415

    _, remote = open_remote(args)
    segments = list(remote.medium.list(SEGMENTS_PREFIX))
    objects = list(remote.medium.list(OBJECTS_PREFIX))
    document = {
        "remote": str(remote.remote),
        "entries": len(remote.entries()),
        "segments": len(segments),
        "segment_bytes": sum(info.size for info in segments),
        "objects": len(objects),
        "object_bytes": sum(info.size for info in objects),
    }
    if out.json_mode:
        out.document(document)
    else:
        out.fields([(name.replace("_", " "), str(value)) for name, value in document.items()])
    return 0


def run_remote_cleanup(args: argparse.Namespace, out: Output) -> int:
    local, remote = open_remote(args)
    with out.activity("collecting the remote's garbage"):
        report = remote.collect_garbage(
            grace_seconds=local.options.object_grace_seconds, recheck_seconds=RECHECK_SECONDS
        )
    document = {
        "busy": report.busy,
        "segments_merged": report.segments_merged,
        "deleted": report.deleted,
        "freed_bytes": report.freed_bytes,
        "kept": report.kept,
    }
    if out.json_mode:
        out.document(document)
    elif report.busy:
        out.line("another machine holds the remote's GC lease: nothing done")
    else:
        out.line(
            f"merged {report.segments_merged} segments into one; "
            f"deleted {report.deleted} objects ({report.freed_bytes} bytes); kept "
            f"{report.kept} unreferenced ones (young, or referenced at the re-check)"
        )
    return 0
