from .pretrained import (CheckpointMismatchError, PretrainedConfigError, apply_pretrained,
                         extract_state_dict, load_pretrained_backbone, pretrained_entry)

__all__ = ['CheckpointMismatchError', 'PretrainedConfigError', 'apply_pretrained',
           'extract_state_dict', 'load_pretrained_backbone', 'pretrained_entry']
