from __future__ import annotations

from cri_shim.oci.runc import RuncError, RuncNotFoundError, classify


def test_runc_and_crun_both_say_not_found_in_their_own_words() -> None:
    runc = classify(["state"], "container does not exist\n")
    crun = classify(
        ["state"],
        "error opening file `/run/stowage/oci/crun/abc/status`: No such file or directory\n",
    )
    assert isinstance(runc, RuncNotFoundError)
    assert isinstance(crun, RuncNotFoundError)


def test_other_failures_keep_the_runtimes_message() -> None:
    err = classify(["create"], '{"level":"error","msg":"cgroups in hybrid mode not supported"}\n')
    assert not isinstance(err, RuncNotFoundError)
    assert isinstance(err, RuncError)
    assert "hybrid mode" in str(err)
    missing_binary = classify(["exec"], "exec: /bin/nope: No such file or directory\n")
    assert not isinstance(missing_binary, RuncNotFoundError)
