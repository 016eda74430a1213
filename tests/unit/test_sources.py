"""node_agent/sources.py on folders of its own: sysctl's ordering and masking, the placement of a
drop-in about to be written, TuneD's includes and its reapply rule. The real `sysctl --system` and
the real TuneD daemon are the oracles in tests/e2e/test_conflicts.py; these pin the rules down."""

from __future__ import annotations

from node_agent import sources

K = "net.core.somaxconn"


def layout(tmp_path, files: dict[str, str]):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    dirs = tuple(str(tmp_path / d)
                 for d in ("etc/sysctl.d", "run/sysctl.d", "usr/local/lib/sysctl.d", "usr/lib/sysctl.d"))
    return dirs, str(tmp_path / "etc/sysctl.conf")


def scan(tmp_path, files, **kw):
    dirs, conf = layout(tmp_path, files)
    return sources.scan([K], dirs=dirs, conf=conf, tuned_dirs=(str(tmp_path / "etc/tuned"),),
                        active_file=str(tmp_path / "etc/tuned/active_profile"),
                        main_conf=str(tmp_path / "etc/tuned/tuned-main.conf"), proc=str(tmp_path / "proc"), **kw)


def test_files_apply_by_name_across_folders_and_sysctl_conf_comes_last(tmp_path):
    s = scan(tmp_path, {"usr/lib/sysctl.d/70-vendor.conf": f"{K} = 700\n",
                        "etc/sysctl.d/60-admin.conf": f"# comment\n; another\n-{K}=600\n",
                        "run/sysctl.d/65-run.conf": "net/core/somaxconn = 650\n",
                        "etc/sysctl.conf": ""})
    knob = s["knobs"][K]
    assert [(f["path"].split(str(tmp_path))[1], f["value"]) for f in knob["files"]] == [
        ("/etc/sysctl.d/60-admin.conf", "600"), ("/run/sysctl.d/65-run.conf", "650"),
        ("/usr/lib/sysctl.d/70-vendor.conf", "700")]
    assert knob["boot"]["value"] == "700"
    s = scan(tmp_path, {"etc/sysctl.conf": f"{K} = 900\n"})
    assert s["knobs"][K]["boot"]["value"] == "900"


def test_an_etc_file_masks_the_vendor_file_of_the_same_name(tmp_path):
    s = scan(tmp_path, {"usr/lib/sysctl.d/50-x.conf": f"{K} = 500\n", "etc/sysctl.d/50-x.conf": "# masked\n"})
    assert s["knobs"][K]["files"] == [] and s["knobs"][K]["boot"] is None


def test_a_drop_in_about_to_be_written_is_placed_where_sysctl_reads_it(tmp_path):
    files = {"etc/sysctl.d/95-late.conf": f"{K} = 950\n", "etc/sysctl.d/10-early.conf": f"{K} = 100\n"}
    path = str(tmp_path / "etc/sysctl.d/90-tunefleet.conf")
    knob = scan(tmp_path, files, extra={"path": path, "values": {K: "4096"}})["knobs"][K]
    assert [f["value"] for f in knob["files"]] == ["100", "4096", "950"] and knob["boot"]["value"] == "950"


def test_tuned_profiles_resolve_includes_and_lose_to_reapplied_files(tmp_path):
    files = {"etc/tuned/base/tuned.conf": f"[sysctl]\n{K} = >2048\nvm.swappiness=10\n",
             "etc/tuned/mine/tuned.conf": f"[main]\ninclude=base\n\n[sysctl]\n{K}=\"3000\"\n",
             "etc/tuned/active_profile": "mine\n"}
    knob = scan(tmp_path, files)["knobs"][K]
    assert knob["tuned"]["value"] == "3000" and knob["tuned"]["profile"] == "mine"
    assert knob["after_tuned"]["by"] == "tuned"
    assert sources.tuned_profile("base", (str(tmp_path / "etc/tuned"),))[K]["value"] == ">2048"
    files["usr/lib/sysctl.d/60-vendor.conf"] = f"{K} = 600\n"  # not applied again by TuneD
    assert scan(tmp_path, files)["knobs"][K]["after_tuned"]["by"] == "tuned"
    files["etc/sysctl.d/60-admin.conf"] = f"{K} = 601\n"       # applied again over the profile
    after = scan(tmp_path, files)["knobs"][K]["after_tuned"]
    assert after["by"] == "file" and after["value"] == "601"
    files["etc/tuned/tuned-main.conf"] = "reapply_sysctl = 0\n"
    assert scan(tmp_path, files)["knobs"][K]["after_tuned"]["by"] == "tuned"
