"""The DEC-Seg network and its reconstruction generators (docs/MODEL.md).

``build_model(cfg)`` and ``build_generators(cfg)`` are the entry points; see docs/MODEL.md.
"""
from __future__ import annotations

from torch import nn

from decseg.config import Config
from decseg.models.decseg_net import DECSegNet, resize_image
from decseg.models.encoders import Encoder, create_encoder, load_encoder_weights
from decseg.models.generator import ReconstructionGenerator


def build_encoder(cfg: Config, *, load_pretrained: bool = True) -> Encoder:
    # load_pretrained=False: the caller loads all weights itself (a checkpoint), so neither
    # fetch ImageNet weights nor warn about random initialisation.
    pretrained = cfg.model.pretrained if load_pretrained else None
    return create_encoder(cfg.model.encoder, in_channels=cfg.data.channels, pretrained=pretrained,
                          img_size=cfg.data.size)


def build_model(cfg: Config, *, load_pretrained: bool = True) -> DECSegNet:
    """The segmentation network for ``cfg`` (model.* switches, data.channels/classes/size).

    ``load_pretrained=False`` skips ``model.pretrained`` (no download, no random-init warning)
    for callers that load a whole checkpoint next.
    """
    m = cfg.model
    net = DECSegNet(build_encoder(cfg, load_pretrained=load_pretrained), classes=cfg.data.classes,
                    cfa=m.cfa, sc=m.sc, dcf=m.dcf,
                    size=cfg.data.size, interpolation=cfg.data.interpolation)
    return net


def build_generators(cfg: Config) -> nn.ModuleList:
    """``[G1, G2]``: logits (K channels) -> image (C channels), separate weights."""
    k, c = cfg.data.classes, cfg.data.channels
    return nn.ModuleList([ReconstructionGenerator(k, c), ReconstructionGenerator(k, c)])


def count_parameters(module: nn.Module | None, trainable_only: bool = False) -> int:
    """Number of parameters (elements) of ``module``; 0 for None."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_breakdown(net: DECSegNet, generators: nn.Module | None = None) -> dict:
    """Parameters per module, as ``decseg summary`` prints them."""
    out: dict = {
        "encoder": count_parameters(net.encoder),
        # decseg's own modules around the timm backbone: C->3 adapter, stride-2 stem, ViT pyramid
        "encoder_levels": {"backbone": count_parameters(net.encoder.backbone),
                           **{k: count_parameters(m) for k, m in net.encoder.extra_modules().items()}},
        "cfa": count_parameters(net.cfa),
        "decoder_full": count_parameters(net.decoder_full),
        "decoder_half": count_parameters(net.decoder_half),
        "fusion": count_parameters(net.fusion),
    }
    if net.cfa is not None:
        out["cfa_levels"] = {f"cfa{k + 1}": count_parameters(m) for k, m in enumerate(net.cfa)}
    if net.fusion is not None:
        f = net.fusion
        names = ["dcf5", "dcf4", "dcf3", "dcf2", "dcf1", "bottleneck", "up4", "up3", "up2", "up1", "head"]
        out["fusion_levels"] = {n: count_parameters(getattr(f, n)) for n in names}
    out["total"] = count_parameters(net)
    if generators is not None:
        out["generators"] = count_parameters(generators)
        out["generator_each"] = [count_parameters(g) for g in generators]
    return out


__all__ = ["DECSegNet", "Encoder", "create_encoder", "ReconstructionGenerator", "build_model", "build_encoder",
           "build_generators", "count_parameters", "parameter_breakdown", "load_encoder_weights",
           "resize_image"]
