"""The policy store: a folder with an index, keyed by knob set, workload and kernel family."""

import json

import pytest

from controller.learn import policystore
from controller.learn.policystore import PolicyStore
from tests.unit import surface


def save(store: PolicyStore, spec, kernel: str, **extra):
    path = store.new_path()
    path.write_bytes(b"a policy")
    return store.add(path, spec, kernel, **extra)


def test_default_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNEFLEET_POLICY_STORE", str(tmp_path / "store"))
    assert policystore.default_root() == tmp_path / "store"
    monkeypatch.delenv("TUNEFLEET_POLICY_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert policystore.default_root() == tmp_path / "data" / "tunefleet" / "policies"


def test_kernel_family_is_major_minor():
    assert policystore.kernel_family({"kernel": "6.18.0-1-amd64"}) == "6.18"
    assert policystore.kernel_family({"kernel": "5.10.0-openEuler"}) == "5.10"
    assert policystore.kernel_family({}) == ""
    assert policystore.fleet_kernel_family({"a": {"kernel": "6.1.2"}, "b": {"kernel": "5.10.1"}}) == "5.10+6.1"


def test_only_the_same_knob_set_is_compatible(tmp_path):
    store = PolicyStore(tmp_path)
    spec = surface.spec()
    assert store.find(spec, "6.18") is None
    save(store, spec, "6.18")
    other = spec.model_copy(deep=True)
    other.action_space[0].max = 1000  # another range: the actions mean other values
    assert store.find(other, "6.18") is None
    assert store.find(spec, "5.10") is not None  # another kernel family: still usable, ranked lower


def test_same_workload_and_kernel_are_preferred_then_the_newest(tmp_path):
    store = PolicyStore(tmp_path)
    spec = surface.spec()
    elsewhere = save(store, spec, "5.10")
    here = save(store, spec, "6.18")
    assert store.find(spec, "6.18").id == here.id
    assert store.find(spec, "5.10").id == elsewhere.id
    newer = save(store, spec, "6.18", run_dir="r2")
    assert store.find(spec, "6.18").id == newer.id
    index = json.loads((tmp_path / "index.json").read_text())
    assert [p["id"] for p in index["policies"]] == [elsewhere.id, here.id, newer.id]
    assert index["policies"][2]["run_dir"] == "r2" and index["policies"][0]["workload"] == "surface"


def test_an_index_entry_whose_file_is_gone_is_skipped(tmp_path):
    store = PolicyStore(tmp_path)
    spec = surface.spec()
    entry = save(store, spec, "6.18")
    entry.path(tmp_path).unlink()
    assert store.find(spec, "6.18") is None


def test_a_broken_index_is_one_clear_error(tmp_path):
    from controller.errors import SpecError

    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(SpecError, match="index.json cannot be read"):
        PolicyStore(tmp_path).find(surface.spec(), "6.18")
