"""kopf's last-handled configuration: written by the reconciler's status apply when it carried
it (kopf's patch stays empty: one write per handled Agent), by kopf's own patch otherwise."""

from __future__ import annotations

import kopf
from rouse_operator.bookkeeping import InStatusApply, encode

BODY = kopf.Body({"metadata": {"namespace": "ns", "name": "a"}, "spec": {"image": "i"}})


def test_carried_by_the_status_apply_kopf_writes_nothing() -> None:
    storage, patch = InStatusApply(), kopf.Patch()
    essence = storage.build(body=BODY)
    storage.written("ns", "a", encode(essence))
    storage.store(body=BODY, patch=patch, essence=essence)
    assert not patch
    assert (
        storage.fetch(
            body=kopf.Body({"status": {"kopf": {"last-handled-configuration": encode(essence)}}})
        )
        == essence
    )


def test_not_carried_kopf_patches_it_as_usual() -> None:
    storage, patch = InStatusApply(), kopf.Patch()
    essence = storage.build(body=BODY)
    storage.written("ns", "a", encode({"spec": {"image": "older"}}))  # a different handling
    storage.store(body=BODY, patch=patch, essence=essence)
    assert patch == {"status": {"kopf": {"last-handled-configuration": encode(essence)}}}
    patch = kopf.Patch()
    storage.store(body=BODY, patch=patch, essence=essence)  # nothing carried at all
    assert patch["status"]["kopf"]["last-handled-configuration"] == encode(essence)
