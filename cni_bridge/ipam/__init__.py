"""Host-local IPAM: pure range logic (``ranges``), the allocator over a small store interface
(``allocator``, ``store``), a file store safe across processes (``filestore``), an in-memory
one for tests (``memstore``) and the plugin verbs (``hostlocal``), usable in-process by the
bridge or as the ``stowage-host-local`` executable."""

__all__: list[str] = []
