"""The OCI runtime shell: runc, conmon and bundles. Everything here does I/O; nothing decides."""
