"""What the offline side (``mkd``, ``export``) and the online side (``service``) share, torch-free: paths, small
I/O helpers, the CLI's error exit. ``service`` imports from here, never from ``mkd`` (docs/architecture.md)."""
