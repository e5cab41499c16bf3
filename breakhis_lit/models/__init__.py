"""Networks (DALA-ResNet, VGG16Inception, timm baselines), their weights, and the LightningModule."""

from breakhis_lit.models.base import Backbone, ChannelsLastToFirst, TokensToGrid
from breakhis_lit.models.classifier import BreakHisClassifier
from breakhis_lit.models.dala_resnet import (
    ClassifierHead,
    DALAResNet,
    DALAResNet50,
    GatedResidualBlock,
    LightweightAttentionGate,
)
from breakhis_lit.models.timm_net import TimmClassifier, check_timm_model_name
from breakhis_lit.models.vgg_inception import NaiveInceptionBlock, VGG16Inception
from breakhis_lit.models.weights import LoadReport, load_checked, read_state_dict, save_weights

__all__ = [
    "Backbone",
    "BreakHisClassifier",
    "ChannelsLastToFirst",
    "ClassifierHead",
    "DALAResNet",
    "DALAResNet50",
    "GatedResidualBlock",
    "LightweightAttentionGate",
    "LoadReport",
    "NaiveInceptionBlock",
    "TimmClassifier",
    "TokensToGrid",
    "VGG16Inception",
    "check_timm_model_name",
    "load_checked",
    "read_state_dict",
    "save_weights",
]
