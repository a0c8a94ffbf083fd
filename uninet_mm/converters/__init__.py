from .official import ConversionError, ConvertedCheckpoint, convert_official_state_dict

__all__ = ['ConversionError', 'ConvertedCheckpoint', 'convert_official_state_dict']
