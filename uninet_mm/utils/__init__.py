from .pretrained import (CheckpointMismatchError, PretrainedConfigError, apply_pretrained,
                         extract_state_dict, load_pretrained_backbone)

__all__ = ['CheckpointMismatchError', 'PretrainedConfigError', 'apply_pretrained',
           'extract_state_dict', 'load_pretrained_backbone']
