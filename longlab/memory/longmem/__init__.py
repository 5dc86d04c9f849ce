"""LongMem: frozen backbone, SideNet with cross-network residuals, chunked memory bank."""
