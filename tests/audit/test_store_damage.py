"""Store damage: named, and made again."""
import json
from pathlib import Path

import pytest

from .harness import ACCEPT, CLEAR, Cases, Outcome, generate, lib
from .inputs import copy_data, copy_store, edit_json, rows_check

pytestmark = pytest.mark.audit
CASES = Cases("store-damage")


def _rerun_damaged(damage):
    def build(w, f):
        store = copy_store(w, f)
        damage(store, w)
        return generate(w, copy_data(w, f), store)
    return build


def _first(store: Path, w) -> tuple[Path, Path]:
    row = store / "rows" / w.keys[0][:2] / f"{w.keys[0]}.json"
    return row, store / json.loads(row.read_text())["file"]


def remade(folder: Path, outcome: Outcome) -> str | None:
    return rows_check(4)(folder, outcome)


for _name, _damage, _warn, _expected, _names in (
        ("image-deleted", lambda s, w: _first(s, w)[1].unlink(), (".png",), ACCEPT, ()),
        ("image-zero-bytes", lambda s, w: _first(s, w)[1].write_bytes(b""), (".png",), ACCEPT, ()),
        ("image-not-an-image", lambda s, w: _first(s, w)[1].write_text("garbage" * 10), (".png",), ACCEPT, ()),
        ("image-truncated", lambda s, w: _first(s, w)[1].write_bytes(_first(s, w)[1].read_bytes()[:200]), (".png",),
         ACCEPT, ()),
        ("row-without-file", lambda s, w: edit_json(_first(s, w)[0], lambda r: {k: v for k, v in r.items()
                                                                                 if k != "file"}), (".json",), ACCEPT, ()),
        ("row-file-outside-store", lambda s, w: edit_json(_first(s, w)[0], lambda r: {**r, "file": "/etc/os-release"}),
         (".json",), ACCEPT, ()),
        ("temporary-leftovers", lambda s, w: (s / "images" / "genie" / f".tmp-{w.keys[0]}.png.abc").write_bytes(b"x"),
         (), ACCEPT, ()),
        ("manifest-deleted", lambda s, w: (s / "manifest.csv").unlink(), (), ACCEPT, ()),
        ("row-truncated", lambda s, w: _first(s, w)[0].write_text(_first(s, w)[0].read_text()[:40]), (), CLEAR, (".json",)),
        ("row-json-list", lambda s, w: _first(s, w)[0].write_text("[1, 2]"), (), CLEAR, (".json",)),
        ("row-latin1", lambda s, w: _first(s, w)[0].write_bytes(b'{"key": "caf\xe9"}'), (), CLEAR, (".json",))):
    CASES.add(f"damage-{_name}", _expected, f"genie generate again on a store with {_name.replace('-', ' ')}",
              _rerun_damaged(_damage), names=_names, warn=_warn, check=remade if _expected == ACCEPT else None)
CASES.add("damage-lib-load-image-not-an-image", CLEAR, "Store.load_image of a key whose image is garbage",
          lambda w, f: lib("from genie_utils.store import Store\nStore(V['store']).load_image(V['key'])",
                           store=(lambda s: (_first(s, w)[1].write_text("garbage"), s)[1])(copy_store(w, f)),
                           key=w.keys[0]), names=(".png",))
CASES.add("damage-lib-has-image-not-an-image", ACCEPT, "Store.has of a key whose image is garbage: not "
          "done, and named", lambda w, f: lib('''
from genie_utils.store import Store
audit_fail("counted as done") if Store(V["store"]).has(V["key"]) else audit_ok()
''', store=(lambda s: (_first(s, w)[1].write_text("garbage"), s)[1])(copy_store(w, f)), key=w.keys[0]), warn=(".png",))
CASES.add("damage-lib-manifest-row-truncated", CLEAR, "Store.manifest with a truncated row file",
          lambda w, f: lib("from genie_utils.store import Store\nStore(V['store']).manifest()",
                           store=(lambda s: (_first(s, w)[0].write_text("{\"key\":"), s)[1])(copy_store(w, f))),
          names=(".json",))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_case(case, run_case):
    outcome = run_case(case)
    assert outcome.observed == case.expected, outcome.report(case)
