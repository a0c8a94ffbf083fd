from .pretrained import CheckpointMismatchError, extract_state_dict, load_pretrained_backbone

__all__ = ['CheckpointMismatchError', 'extract_state_dict', 'load_pretrained_backbone']
