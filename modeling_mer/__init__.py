"""The MER model package: the three files here travel to the Hub and load with `trust_remote_code=True`."""

from .configuration_mer import MERConfig
from .modeling_mer import MERFeaturesOutput, MERModel, MEROutput, MERWhisperEncoder
from .processing_mer import MERProcessor

MERConfig.register_for_auto_class()
MERModel.register_for_auto_class("AutoModel")
MERProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["MERConfig", "MERFeaturesOutput", "MERModel", "MEROutput", "MERProcessor", "MERWhisperEncoder"]
