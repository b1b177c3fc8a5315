def test_all_means_what_the_runtime_holds() -> None:
    from cri_shim.spec.security import capabilities, capabilities_from_mask

    held = capabilities_from_mask(0x1FFFEFFFFFF)  # every capability but CAP_SYS_RESOURCE (24)
    assert "CAP_SYS_RESOURCE" not in held
    assert "CAP_CHOWN" in held
    assert len(held) == 40
    priv = capabilities([], [], [], privileged=True, available=held)
    assert priv["bounding"] == list(held)
    add_all = capabilities(["ALL"], [], [], privileged=False, available=held)
    assert "CAP_SYS_RESOURCE" not in add_all["effective"]
    assert "CAP_SYS_ADMIN" in add_all["effective"]
