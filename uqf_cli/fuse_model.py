"""Old path of :mod:`uqf_cli.fuse.model`."""

# transitional: removed at merge
from uqf_cli.fuse.model import CrossAttention, FuserConfig, FuserOutput, ModalityMemory, QFormerBlock, UnifiedQFormer

__all__ = ["CrossAttention", "FuserConfig", "FuserOutput", "ModalityMemory", "QFormerBlock", "UnifiedQFormer"]
